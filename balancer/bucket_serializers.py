"""JSON shape of a bucket object (SPEC §15 "Buckets"): read-only, built by
`balancer.bucket_figures.buckets_json`."""
from __future__ import annotations

from rest_framework import serializers


class TokensSerializer(serializers.Serializer):
    assured = serializers.IntegerField(allow_null=True, help_text="floor(rate × parent's); null: unlimited")
    ceiling = serializers.IntegerField(allow_null=True, help_text="floor(ceil × parent's); null: unlimited")
    used = serializers.IntegerField(help_text="held by requests of this bucket and those below it")


class BucketSerializer(serializers.Serializer):
    """A bucket with its tokens and queue (SPEC §15)."""

    name = serializers.CharField(read_only=True)
    parent = serializers.CharField(read_only=True, help_text="parent bucket; empty: root")
    rate = serializers.FloatField(read_only=True)
    ceil = serializers.FloatField(read_only=True)
    tokens = TokensSerializer(read_only=True)
    queued = serializers.IntegerField(read_only=True, help_text="requests waiting for a token now")
    dropped = serializers.IntegerField(read_only=True, help_text="requests refused (queue full or timed out)")
