"""Views of the JSON management API (SPEC §9): directors and backends (the audit log: audit_api).

Objects are looked up by name. Every write goes through `balancer.services` with actor
`api:<username>`; the services validate again, lock, audit and announce the change.
"""
from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services, validation
from .api_errors import error_responses
from .models import Backend, Director
from .serializers import (
    BackendCreateSerializer,
    BackendSerializer,
    BackendUpdateSerializer,
    DirectorCreateSerializer,
    DirectorSerializer,
    DirectorUpdateSerializer,
)

STATIC_BACKEND_FIELDS = {"enabled"}  # the only backend field a static director lets change


def _actor(request) -> str:
    return f"api:{request.user.get_username()}"


def _directors():
    return Director.objects.prefetch_related(Prefetch("backends", queryset=Backend.objects.order_by("position", "id")),
                                             "buckets")


def _valid_name(name: str) -> bool:
    """Names that cannot exist are not looked up (PostgreSQL refuses NUL bytes in queries)."""
    return bool(validation.NAME_PATTERN.fullmatch(name))


def _director(name: str, queryset=None) -> Director:
    try:
        if not _valid_name(name):
            raise Director.DoesNotExist
        return (queryset if queryset is not None else Director.objects).get(name=name)
    except Director.DoesNotExist:
        raise services.NotFound(f"director {name!r} not found") from None


def _backend(director_name: str, backend_name: str) -> Backend:
    try:
        if not (_valid_name(director_name) and _valid_name(backend_name)):
            raise Backend.DoesNotExist
        return Backend.objects.select_related("director").get(director__name=director_name, name=backend_name)
    except Backend.DoesNotExist:
        _director(director_name)  # names the missing director when that is what is missing
        raise services.NotFound(f"backend {backend_name!r} not found in director {director_name!r}") from None


def _refuse_static(director: Director, data, allowed=frozenset()) -> None:
    """A static director refuses changes before their values are even looked at."""
    if director.dynamic:
        return
    if not allowed or not isinstance(data, dict) or set(data) - allowed:
        raise services.Forbidden(f"director {director.name!r} {services.STATIC_REASON}")


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _checked(serializer_class):
    """`_validated` for the services' `check` hooks: bad values raise ValidationFailed."""
    def check(data) -> dict:
        try:
            return dict(_validated(serializer_class, data))
        except serializers.ValidationError as exc:
            raise services.ValidationFailed(exc.detail) from None
    return check


def _one_or_many(name: str, serializer_class):
    """Schema of a body that is one object or a list of them (bulk create)."""
    return PolymorphicProxySerializer(component_name=name, resource_type_field_name=None, many=False,
                                      serializers=[serializer_class, serializer_class(many=True)])


def _director_response(name: str, code=status.HTTP_200_OK) -> Response:
    return Response(DirectorSerializer(_director(name, _directors())).data, status=code)


def _backend_response(backend: Backend, code=status.HTTP_200_OK) -> Response:
    """The backend as the services left it (they return the saved, locked row)."""
    return Response(BackendSerializer(backend).data, status=code)


class DirectorList(APIView):
    @extend_schema(responses={200: DirectorSerializer(many=True), **error_responses()})
    def get(self, request):
        return Response(DirectorSerializer(_directors(), many=True).data)

    @extend_schema(request=DirectorCreateSerializer,
                   responses={201: DirectorSerializer, **error_responses(400, 409)})
    def post(self, request):
        data = dict(_validated(DirectorCreateSerializer, request.data))
        director = services.create_director(data.pop("name"), data, actor=_actor(request))
        return _director_response(director.name, status.HTTP_201_CREATED)


class DirectorDetail(APIView):
    @extend_schema(responses={200: DirectorSerializer, **error_responses(404)})
    def get(self, request, director):
        return _director_response(director)

    @extend_schema(request=DirectorUpdateSerializer,
                   responses={200: DirectorSerializer, **error_responses(400, 404)})
    def patch(self, request, director):
        instance = _director(director)
        _refuse_static(instance, request.data)
        services.update_director(instance, _validated(DirectorUpdateSerializer, request.data), actor=_actor(request))
        return _director_response(director)

    @extend_schema(responses={204: None, **error_responses(404)})
    def delete(self, request, director):
        services.delete_director(_director(director), actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BackendList(APIView):
    @extend_schema(responses={200: BackendSerializer(many=True), **error_responses(404)})
    def get(self, request, director):
        instance = _director(director)
        backends = instance.backends.order_by("position", "id")
        return Response(BackendSerializer(backends, many=True).data)

    @extend_schema(
        description="One backend object, or a list of them created all or nothing (one config change, "
                    "one audit record each; a bad list answers 400 with the errors of each bad item "
                    "under its index: `{\"1\": {\"url\": [\"...\"]}}`).",
        request=_one_or_many("BackendCreateOneOrMany", BackendCreateSerializer),
        responses={201: _one_or_many("BackendOneOrMany", BackendSerializer), **error_responses(400, 404, 409)})
    def post(self, request, director):
        instance = _director(director)
        _refuse_static(instance, request.data)
        if isinstance(request.data, list):
            created = services.create_backends(instance, request.data, actor=_actor(request),
                                               check=_checked(BackendCreateSerializer))
            return Response(BackendSerializer(created, many=True).data, status=status.HTTP_201_CREATED)
        data = _validated(BackendCreateSerializer, request.data)
        backend = services.create_backend(instance, data, actor=_actor(request))
        return _backend_response(backend, status.HTTP_201_CREATED)


class BackendDetail(APIView):
    @extend_schema(responses={200: BackendSerializer, **error_responses(404)})
    def get(self, request, director, backend):
        return _backend_response(_backend(director, backend))

    @extend_schema(request=BackendUpdateSerializer,
                   responses={200: BackendSerializer, **error_responses(400, 404)})
    def patch(self, request, director, backend):
        instance = _backend(director, backend)
        _refuse_static(instance.director, request.data, allowed=STATIC_BACKEND_FIELDS)
        changes = _validated(BackendUpdateSerializer, request.data)
        return _backend_response(services.update_backend(instance, changes, actor=_actor(request)))

    @extend_schema(
        description="Drain the backend: it takes no new requests and is removed once its "
                    "in-flight requests finish. Answers the backend with `terminating: true`.",
        responses={202: BackendSerializer, **error_responses(404)})
    def delete(self, request, director, backend):
        instance = services.delete_backend(_backend(director, backend), actor=_actor(request))
        return _backend_response(instance, status.HTTP_202_ACCEPTED)


class BackendEnable(APIView):
    """Enable the backend (x0 UNLOCK); allowed on static directors too. No request body."""

    enabled = True

    @extend_schema(request=None, responses={200: BackendSerializer, **error_responses(404)})
    def post(self, request, director, backend):
        instance = services.set_backend_enabled(_backend(director, backend), self.enabled, actor=_actor(request))
        return _backend_response(instance)


class BackendDisable(BackendEnable):
    """Disable the backend (x0 LOCK); allowed on static directors too. No request body."""

    enabled = False
