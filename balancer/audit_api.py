"""`GET /api/v1/audit/`: the audit log, newest first, filtered and paginated (SPEC §9, §13).

Filters: `actor`, `director`, `backend`, `action` (exact), `since` (at or after) and `until`
(before), ISO 8601 times (a time without zone is UTC, a bare date is its midnight).
Every query parameter is checked: an unknown name, a malformed time or a `limit`/`offset`
that is not an integer in range is a 400 naming it, never silently ignored.
"""
from __future__ import annotations

import datetime as dt

from django.utils import dateparse, timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

from . import validation
from .api_errors import error_responses
from .models import AuditRecord
from .serializers import AuditRecordSerializer

# query parameter -> (model field, longest value)
TEXT_FILTERS = {"actor": ("actor", 200), "director": ("director_name", 64), "backend": ("backend_name", 64),
                "action": ("action", 64)}
TIME_FILTERS = {"since": "at__gte", "until": "at__lt"}
DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET = 50, 500, 2**31 - 1
TIME_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][^\\u0000-\\u001f\\u007f]*)?$"
PAGE_PARAMETERS = {"limit": (1, MAX_LIMIT), "offset": (0, MAX_OFFSET)}
ALLOWED = (*TEXT_FILTERS, *TIME_FILTERS, *PAGE_PARAMETERS, "format")
_FILTER_HELP = {"actor": "who made the change, e.g. `api:ops` or `admin:admin`", "director": "a director's name",
                "backend": "a backend's name", "action": "e.g. `backend.disable`",
                "since": "at or after this ISO 8601 time (UTC if no zone is given)",
                "until": "before this ISO 8601 time (UTC if no zone is given)"}


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 date or date and time; UTC unless it names its zone. ValueError if malformed."""
    try:
        moment = dateparse.parse_datetime(text.upper())  # RFC 3339 allows 't' and 'z'
        if moment is None:
            day = dateparse.parse_date(text)
            moment = dt.datetime.combine(day, dt.time()) if day else None
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(f"{text!r} is not an ISO 8601 time like 2026-12-06T20:00:00Z")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt.timezone.utc)


def _page_number(text: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{text!r}: must be an integer from {low} to {high}")
    return int(text)


def audit_filters(params) -> dict:
    """Queryset filters of the query `params`; ValidationError naming every bad parameter."""
    filters, errors = {}, {}
    for name in params:
        value = params[name]
        try:
            if name in TEXT_FILTERS:
                field, longest = TEXT_FILTERS[name]
                filters[field] = validation.Rule("str", max_length=longest).clean(value)
            elif name in TIME_FILTERS:
                filters[TIME_FILTERS[name]] = parse_time(value)
            elif name in PAGE_PARAMETERS:
                _page_number(value, *PAGE_PARAMETERS[name])
            elif name not in ALLOWED:
                raise ValueError("unknown filter; use " + ", ".join(ALLOWED[:-1]))
        except ValueError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    return filters


def _parameter_schema(name: str) -> dict:
    """A text filter: its length and no control characters; a time: ISO 8601's date first."""
    if name in TIME_FILTERS:
        return {"type": "string", "pattern": TIME_PATTERN, "maxLength": 64}
    return {"type": "string", "pattern": validation.TEXT_PATTERN, "maxLength": TEXT_FILTERS[name][1]}


class AuditPagination(LimitOffsetPagination):
    """`limit` (default 50, at most 500) and `offset`, checked by `audit_filters` before use."""

    default_limit = DEFAULT_LIMIT
    max_limit = MAX_LIMIT

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = PAGE_PARAMETERS[parameter["name"]]
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters


class AuditList(generics.ListAPIView):
    """The audit log, newest first, narrowed by the filters in the query string."""

    serializer_class = AuditRecordSerializer
    pagination_class = AuditPagination

    def get_queryset(self):
        return AuditRecord.objects.filter(**audit_filters(self.request.query_params)).order_by("-at", "-id")

    @extend_schema(
        parameters=[OpenApiParameter(name, _parameter_schema(name), description=help_text)
                    for name, help_text in _FILTER_HELP.items()],
        responses={200: AuditRecordSerializer(many=True), **error_responses(400)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
