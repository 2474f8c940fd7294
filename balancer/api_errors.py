"""Errors of the management API mapped to HTTP in one place (SPEC §9).

Service exceptions carry their status; DRF's own errors keep theirs. Bodies are always JSON:
``{"detail": "..."}`` or per-field ``{"field": ["message", ...]}``. This module also
documents those bodies in the OpenAPI schema.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.urls import resolve, reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from balancer.services import ServiceError, ValidationFailed


def _field_errors(errors) -> dict:
    """`{field: [messages]}` whatever shape the errors came in; a list of objects (bulk create)
    gives `{index: {field: [messages]}}`."""
    if isinstance(errors, dict):
        return {str(k): _field_errors(v) if isinstance(v, dict) else [str(m) for m in (v if isinstance(v, (list, tuple)) else [v])]
                for k, v in errors.items()}
    return {"non_field_errors": [str(m) for m in (errors if isinstance(errors, (list, tuple)) else [errors])]}


def exception_handler(exc, context):
    """DRF EXCEPTION_HANDLER: service errors by their status, the rest as DRF does."""
    if isinstance(exc, ValidationFailed):
        return Response(_field_errors(exc.errors), status=exc.status)
    if isinstance(exc, ServiceError):
        return Response({"detail": str(exc)}, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response(_field_errors(errors), status=400)
    if isinstance(exc, (OperationalError, InterfaceError)):  # SPEC §11: the proxy serves on; say so
        return Response({"detail": "database unavailable"}, status=503)
    return drf_exception_handler(exc, context)


UNKNOWN_API_PATH = "api-unknown"


@csrf_exempt  # nothing is changed here: a write to a wrong path learns that, not about CSRF
def unknown_api_path(request, rest: str = ""):
    """404 for a path under /api/ that names no endpoint, as JSON like every API error; a path
    that lacks only its trailing slash is told the right one."""
    with_slash = request.path_info + "/"
    if resolve(with_slash).url_name != UNKNOWN_API_PATH:
        detail = f"No API endpoint at {request.path}; API paths end with a slash: {request.path}/"
    else:
        detail = f"No API endpoint at {request.path}; the endpoints are listed at {reverse('api-index')}"
    return JsonResponse({"detail": detail}, status=404)


class ErrorSerializer(serializers.Serializer):
    """Schema of `{"detail": "..."}` error bodies."""

    detail = serializers.CharField()


_MESSAGES = {"type": "array", "items": {"type": "string"}}
FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Messages per offending field (or `detail` for malformed requests); for a list "
                   "of objects, per index (\"0\", \"1\", ...) the messages per field of that item.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {"oneOf": [_MESSAGES, {"type": "object", "additionalProperties": _MESSAGES}]},
}

_DESCRIPTIONS = {
    400: "Bad values; the body names each offending field",
    401: "No credentials",
    403: "Not allowed: missing role, static director, protected backend or config-file route",
    404: "Unknown director, backend or route",
    409: "The name is already taken",
}


def error_responses(*codes: int) -> dict:
    """OpenAPI response entries for the given error statuses (401 and 403 always included)."""
    wanted = sorted({401, 403, *codes})
    return {
        code: OpenApiResponse(FIELD_ERRORS_SCHEMA if code == 400 else ErrorSerializer, _DESCRIPTIONS[code])
        for code in wanted
    }


def forbid_unknown_request_fields(result, generator, request, public):
    """drf-spectacular hook: request bodies reject unknown fields, and the schema says so."""
    for name, schema in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and schema.get("type") == "object":
            schema["additionalProperties"] = False
    return result
