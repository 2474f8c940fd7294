"""Management listener routes of the balancer app: the JSON API, its schema and docs (SPEC §9).

Paths name directors and backends, never ids. enable/disable answer with and without a
trailing slash; only the SPEC form is in the schema.
"""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import api

API = "api/v1/"
BACKEND = API + "directors/<str:director>/backends/<str:backend>/"

urlpatterns = [
    path(API + "directors/", api.DirectorList.as_view(), name="api-director-list"),
    path(API + "directors/<str:director>/", api.DirectorDetail.as_view(), name="api-director-detail"),
    path(API + "directors/<str:director>/backends/", api.BackendList.as_view(), name="api-backend-list"),
    path(BACKEND, api.BackendDetail.as_view(), name="api-backend-detail"),
    path(BACKEND + "enable", api.BackendEnable.as_view(), name="api-backend-enable"),
    path(BACKEND + "enable/", api.BackendEnable.as_view(schema=None)),
    path(BACKEND + "disable", api.BackendDisable.as_view(), name="api-backend-disable"),
    path(BACKEND + "disable/", api.BackendDisable.as_view(schema=None)),
    path(API + "audit/", api.AuditList.as_view(), name="api-audit-list"),
    path(API + "schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(API + "docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
