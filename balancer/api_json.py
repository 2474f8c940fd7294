"""Every answer under /api/ is JSON (SPEC §13), whichever layer gives it.

DRF views answer JSON themselves (`balancer.api_errors`); this module covers what happens
around them: Django's CSRF failure page, errors raised outside a view (a session read while
the database is away, a body over DATA_UPLOAD_MAX_MEMORY_SIZE), Django's HTML error pages,
and request bodies nested too deeply for the JSON parser.
"""
from __future__ import annotations

import http
import logging
import sys

from django.core.exceptions import RequestDataTooBig
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views.csrf import csrf_failure as django_csrf_failure
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

log = logging.getLogger("director.api")
API_PREFIX = "/api/"
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Location")
EXCEPTION_ATTRIBUTE = "director_exception"  # set on the request by `_remember_exception`
DATABASE_UNAVAILABLE = "database unavailable"


def is_api(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def json_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def known_failure(exception: BaseException | None) -> JsonResponse | None:
    """The answer to a failure that is not a bug: the database away (503), a body too large (413)."""
    if isinstance(exception, (OperationalError, InterfaceError)):
        return json_error(503, DATABASE_UNAVAILABLE)
    if isinstance(exception, RequestDataTooBig):
        return json_error(413, "request body too large")
    return None


def _is_json(response) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip().endswith("json")


def _as_json(request, response):
    """Django's HTML error page replaced by `{"detail": ...}` with the same status and headers."""
    failure = known_failure(getattr(request, EXCEPTION_ATTRIBUTE, None))
    if failure is not None:
        return failure
    replacement = json_error(response.status_code, http.HTTPStatus(response.status_code).phrase)
    for name in KEPT_HEADERS:
        if name in response:
            replacement[name] = response[name]
    return replacement


class ApiJsonMiddleware:
    """Outermost middleware: error answers under /api/ leave as JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if is_api(request) and response.status_code >= 400 and not _is_json(response):
            return _as_json(request, response)
        return response

    def process_exception(self, request, exception):
        """A view's known failure answered quietly (not logged as a server error)."""
        return known_failure(exception) if is_api(request) else None


def _remember_exception(sender, request=None, **kwargs) -> None:
    """Django turned an exception outside a view into an HTML page: keep it for `_as_json`."""
    if request is not None:
        setattr(request, EXCEPTION_ATTRIBUTE, sys.exc_info()[1])


got_request_exception.connect(_remember_exception)


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: JSON 403 under /api/, Django's page elsewhere."""
    if is_api(request):
        return json_error(403, f"CSRF verification failed: {reason}")
    return django_csrf_failure(request, reason)


class GuardedJSONParser(JSONParser):
    """DRF's JSON parser; a document nested too deeply for Python is a 400, not a crash."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
