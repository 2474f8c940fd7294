"""Management listener routes of the balancer app (SPEC §9): the JSON API, its schema and
docs; the operator views (live status page and its backend actions, /metrics, /haproxy/stats.csv, /-/ready); and the
static files of the admin and the status page (served by Django from the app directories:
the management listener is low-traffic and has no separate web server).

Paths name directors and backends, never ids (routes, having no name, go by id).
enable/disable answer with and without a trailing slash; only the SPEC form is in the schema.
"""
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import path, re_path

from . import api, api_docs, api_errors, audit_api, bucket_api, haproxy_csv, metrics, route_api, status, status_actions

API = "api/v1/"
BACKEND = API + "directors/<str:director>/backends/<str:backend>/"

urlpatterns = [
    path(API, api_docs.ApiIndex.as_view(), name="api-index"),
    path(API + "directors/", api.DirectorList.as_view(), name="api-director-list"),
    path(API + "directors/<str:director>/", api.DirectorDetail.as_view(), name="api-director-detail"),
    path(API + "directors/<str:director>/backends/", api.BackendList.as_view(), name="api-backend-list"),
    path(BACKEND, api.BackendDetail.as_view(), name="api-backend-detail"),
    path(API + "directors/<str:director>/buckets/", bucket_api.BucketList.as_view(), name="api-bucket-list"),
    path(API + "directors/<str:director>/buckets/<str:bucket>/", bucket_api.BucketDetail.as_view(),
         name="api-bucket-detail"),
    path(BACKEND + "enable", api.BackendEnable.as_view(), name="api-backend-enable"),
    path(BACKEND + "enable/", api.BackendEnable.as_view(schema=None)),
    path(BACKEND + "disable", api.BackendDisable.as_view(), name="api-backend-disable"),
    path(BACKEND + "disable/", api.BackendDisable.as_view(schema=None)),
    path(API + "routes/", route_api.RouteList.as_view(), name="api-route-list"),
    path(API + "routes/<str:route>/", route_api.RouteDetail.as_view(), name="api-route-detail"),
    path(API + "audit/", audit_api.AuditList.as_view(), name="api-audit-list"),
    path(API + "schema/", api_docs.SchemaView.as_view(), name="api-schema"),
    path(API + "docs/", api_docs.DocsView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^api/(?P<rest>.*)$", api_errors.unknown_api_path, name=api_errors.UNKNOWN_API_PATH),
    path("status/", status.status_page, name="status"),
    path("status/backends/<int:pk>/enable", status_actions.enable_backend, name="status-backend-enable"),
    path("status/backends/<int:pk>/disable", status_actions.disable_backend, name="status-backend-disable"),
    path("status/backends/<int:pk>/remove", status_actions.remove_backend, name="status-backend-remove"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("haproxy/stats.csv", haproxy_csv.stats_csv, name="haproxy-stats-csv"),
    path("-/ready", status.ready, name="ready"),
    re_path(r"^static/(?P<path>.+)$", serve_static, {"insecure": True}, name="static"),
]
