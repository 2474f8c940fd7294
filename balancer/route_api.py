"""`/api/v1/routes/` (SPEC §11 "Routes at runtime"): list in match order, create, read,
change, delete. Routes from the config file (`mutable: false`) answer 403 to writes.

Writes go through `balancer.route_services` with actor `api:<username>`; the request
serializer only types the values, the services apply the route rules (`pass` must name a
director, exactly one action, ...).
"""
from __future__ import annotations

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from . import route_rules, route_services, validation
from .api import _actor, _validated
from .api_errors import error_responses
from .models import Route
from .serializers import RuleField, StrictSerializer

_HELP = {
    "priority": "lower first; file routes without one come first, in file order",
    "host": "exact host (case-insensitive); null, \"\" or \"*\": any host",
    "path": "plain prefix of the request path, forwarded unchanged (default \"/\")",
    "pass": "action: a director's name",
    "backend_from": "with pass: \"cookie:NAME\" or \"header:NAME\" picks the backend by name",
    "http": "action: road warrior HTTP, HOST:PORT, [V6]:PORT or unix:/path",
    "fcgi": "action: road warrior FastCGI, HOST:PORT, [V6]:PORT or unix:/path",
    "document_root": "with fcgi: SCRIPT_FILENAME = document_root + script path",
    "script_filename": "with fcgi: fixed SCRIPT_FILENAME (front controller)",
    "bucket": "with pass: the director's bucket for these requests (unknown: root)",
    "bucket_from": "with pass: \"cookie:NAME\" or \"header:NAME\" names the bucket (else `bucket`, else root)",
}
_MAX_ID = 2**63 - 1
_ID = re.compile(r"[0-9]{1,19}")


def _write_fields() -> dict:
    fields = {"priority": RuleField(route_rules.PRIORITY_RULE, required=False, help_text=_HELP["priority"])}
    for name, limit in route_rules.ROUTE_TEXT_LIMITS.items():
        rule = validation.Rule("str", max_length=limit, pattern=route_rules.ROUTE_PATTERNS.get(name))
        fields[name] = RuleField(rule, required=False, allow_null=True, help_text=_HELP[name])
    return fields


RouteWriteSerializer = type("RouteWrite", (StrictSerializer,), {
    **_write_fields(), "__module__": __name__,
    "__doc__": "A route's fields (SPEC §11): exactly one action of pass, http, fcgi. In a PATCH, null "
               "clears a field and a new action replaces the old one with its options."})


def _read_fields() -> dict:
    fields = {"id": serializers.IntegerField(read_only=True),
              "priority": serializers.IntegerField(read_only=True, allow_null=True, help_text=_HELP["priority"])}
    for name in route_rules.ROUTE_TEXT_LIMITS:
        fields[name] = serializers.CharField(read_only=True, allow_null=name != "path", help_text=_HELP[name])
    fields["mutable"] = serializers.BooleanField(read_only=True, help_text="false: from the config file")
    return fields


_RouteFields = type("_RouteFields", (serializers.Serializer,), {**_read_fields(), "__module__": __name__})


class RouteSerializer(_RouteFields):
    """A route as the API shows it (SPEC §11 route object); null where the route sets nothing."""

    def to_representation(self, route: Route) -> dict:
        return route_services.route_json(route)


def _route(pk: str) -> Route:
    """The route with id `pk` (the URL's text: anything but an id in range is simply not found)."""
    try:
        if not (_ID.fullmatch(pk) and 0 < int(pk) <= _MAX_ID):
            raise Route.DoesNotExist
        return Route.objects.get(pk=int(pk))
    except Route.DoesNotExist:
        raise route_services.NotFound(f"route {pk!r} not found") from None


def _writable(pk: str) -> Route:
    """The route, refused before its new values are looked at when it is a file route."""
    route = _route(pk)
    route_services.check_route_writable(route)
    return route


class RouteList(APIView):
    @extend_schema(description="Every route in match order (the first match wins).",
                   responses={200: RouteSerializer(many=True), **error_responses()})
    def get(self, request):
        return Response(RouteSerializer(Route.objects.all(), many=True).data)

    @extend_schema(request=RouteWriteSerializer, responses={201: RouteSerializer, **error_responses(400)})
    def post(self, request):
        data = _validated(RouteWriteSerializer, request.data)
        route = route_services.create_route(dict(data), actor=_actor(request))
        return Response(RouteSerializer(route).data, status=status.HTTP_201_CREATED)


@extend_schema_view(**{method: extend_schema(parameters=[
    OpenApiParameter("route", OpenApiTypes.INT, OpenApiParameter.PATH, description="the route's id")])
    for method in ("get", "patch", "delete")})
class RouteDetail(APIView):
    @extend_schema(responses={200: RouteSerializer, **error_responses(404)})
    def get(self, request, route):
        return Response(RouteSerializer(_route(route)).data)

    @extend_schema(request=RouteWriteSerializer, responses={200: RouteSerializer, **error_responses(400, 404)})
    def patch(self, request, route):
        instance = _writable(route)
        changes = _validated(RouteWriteSerializer, request.data)
        return Response(RouteSerializer(route_services.update_route(instance, dict(changes), actor=_actor(request))).data)

    @extend_schema(responses={204: None, **error_responses(404)})
    def delete(self, request, route):
        route_services.delete_route(_writable(route), actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
