"""The API describing itself: the index at /api/v1/, the OpenAPI schema and the docs page
(SPEC §9, §13).

The schema is JSON unless YAML is asked for (`?format=yaml` or Accept); the docs page sends
a browser without a session to the admin login and back, and answers API clients in JSON.
"""
from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.urls import reverse
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer, TemplateHTMLRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

# What /api/v1/ lists: a name per endpoint and the URL name it reverses to.
ENDPOINTS = {"directors": "api-director-list", "routes": "api-route-list", "audit": "api-audit-list",
             "schema": "api-schema", "docs": "api-docs"}


class ApiIndex(APIView):
    """The endpoints of the API by name; open to anyone (it tells nothing but paths)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(exclude=True)
    def get(self, request):
        return Response({name: reverse(url_name) for name, url_name in ENDPOINTS.items()})


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, `application/json` by default."""

    renderer_classes = [OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2]


def _wants_html(request) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/html" in accept


class DocsView(SpectacularSwaggerView):
    """Swagger UI; its errors and OPTIONS are JSON, a browser without credentials goes to the login."""

    renderer_classes = [TemplateHTMLRenderer, JSONRenderer]  # JSON: what an API client accepts

    def handle_exception(self, exc):
        unauthenticated = isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed))
        if unauthenticated and _wants_html(self.request):
            return redirect_to_login(self.request.get_full_path(), reverse("admin:login"))
        self._answer_json()
        return super().handle_exception(exc)

    def options(self, request, *args, **kwargs):
        self._answer_json()
        return super().options(request, *args, **kwargs)

    def _answer_json(self) -> None:
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
