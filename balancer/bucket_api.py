"""`/api/v1/directors/{d}/buckets/[{name}/]` (SPEC §15 "Buckets") and the bucket objects of
the director object.

Bucket objects: balancer.bucket_figures. Writes go through `balancer.bucket_services` with actor `api:<username>`; static directors
answer 403 to them, like for their backends.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from proxy.buckets import ROOT

from . import bucket_rules, bucket_services
from .api import _actor, _director, _refuse_static, _valid_name, _validated
from .api_errors import error_responses
from .bucket_figures import buckets_json
from .bucket_serializers import BucketSerializer
from .models import Bucket, Director
from .serializers import StrictSerializer, rule_fields
from .services import IMMUTABLE_MESSAGE, NotFound

_CHANGEABLE = {k: v for k, v in bucket_rules.BUCKET_FIELDS.items() if k not in bucket_rules.BUCKET_IMMUTABLE}

BucketCreateSerializer = type("BucketCreate", (StrictSerializer,), {
    **rule_fields(bucket_rules.BUCKET_FIELDS, required=bucket_rules.BUCKET_REQUIRED), "__module__": __name__,
    "__doc__": "A new bucket: name, rate (its assured share of the parent, 0-1), ceil (the most it may "
               "borrow up to, rate-1; default: rate), parent (a bucket of the director; empty: root)."})
BucketUpdateSerializer = type("BucketUpdate", (StrictSerializer,), {
    **rule_fields(_CHANGEABLE), "refused_fields": {"name": IMMUTABLE_MESSAGE}, "__module__": __name__,
    "__doc__": "Bucket fields to change: parent, rate, ceil."})


def _bucket(director: Director, name: str) -> Bucket:
    try:
        if not _valid_name(name) or name == ROOT:
            raise Bucket.DoesNotExist
        return director.buckets.get(name=name)
    except Bucket.DoesNotExist:
        raise NotFound(f"bucket {name!r} not found in director {director.name!r}") from None


def _bucket_response(director_name: str, name: str, code=status.HTTP_200_OK) -> Response:
    director = _director(director_name, Director.objects.prefetch_related("backends", "buckets"))
    found = buckets_json(director, only=name)
    if not found:
        raise NotFound(f"bucket {name!r} not found in director {director_name!r}")
    return Response(found[0], status=code)


class BucketList(APIView):
    @extend_schema(responses={200: BucketSerializer(many=True), **error_responses(404)})
    def get(self, request, director):
        instance = _director(director, Director.objects.prefetch_related("backends", "buckets"))
        return Response(buckets_json(instance))

    @extend_schema(request=BucketCreateSerializer,
                   responses={201: BucketSerializer, **error_responses(400, 404, 409)})
    def post(self, request, director):
        instance = _director(director)
        _refuse_static(instance, request.data)
        data = _validated(BucketCreateSerializer, request.data)
        bucket = bucket_services.create_bucket(instance, dict(data), actor=_actor(request))
        return _bucket_response(director, bucket.name, status.HTTP_201_CREATED)


class BucketDetail(APIView):
    @extend_schema(responses={200: BucketSerializer, **error_responses(404)})
    def get(self, request, director, bucket):
        _bucket(_director(director), bucket)
        return _bucket_response(director, bucket)

    @extend_schema(request=BucketUpdateSerializer,
                   responses={200: BucketSerializer, **error_responses(400, 404)})
    def patch(self, request, director, bucket):
        instance = _director(director)
        found = _bucket(instance, bucket)
        _refuse_static(instance, request.data)
        bucket_services.update_bucket(found, dict(_validated(BucketUpdateSerializer, request.data)),
                                      actor=_actor(request))
        return _bucket_response(director, bucket)

    @extend_schema(description="Delete a bucket that has no child buckets (409 otherwise); routes "
                               "naming it send their requests to root from then on.",
                   responses={204: None, **error_responses(404, 409)})
    def delete(self, request, director, bucket):
        instance = _director(director)
        found = _bucket(instance, bucket)
        _refuse_static(instance, None)
        bucket_services.delete_bucket(found, actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
