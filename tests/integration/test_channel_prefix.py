"""Two Directors (two databases) sharing one Redis never hear each other's config pushes or
health news: the channel layer of each is prefixed with its own name (real Redis)."""
from __future__ import annotations

import asyncio

from channels_redis.pubsub import RedisPubSubChannelLayer

from director_site import environment
from proxy.channel_names import CONFIG_GROUP, health_channel
from tests.support.shared_services import redis_url


def layer_for(monkeypatch, database_url: str) -> RedisPubSubChannelLayer:
    monkeypatch.delenv("DIRECTOR_CHANNEL_PREFIX", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url())
    return RedisPubSubChannelLayer(**environment.channel_layers()["default"]["CONFIG"])


async def test_a_push_reaches_only_the_director_that_sent_it(monkeypatch):
    ours = layer_for(monkeypatch, "postgres://127.0.0.1/director_a")
    theirs = layer_for(monkeypatch, "postgres://127.0.0.1/director_b")
    try:
        listeners = {}
        for name, layer in (("ours", ours), ("theirs", theirs)):
            listeners[name] = await layer.new_channel()
            await layer.group_add(CONFIG_GROUP, listeners[name])
        await asyncio.sleep(0.2)  # subscriptions settle
        await ours.group_send(CONFIG_GROUP, {"type": "config.changed", "version": 7})
        assert (await asyncio.wait_for(ours.receive(listeners["ours"]), 5))["version"] == 7
        try:
            stray = await asyncio.wait_for(theirs.receive(listeners["theirs"]), 0.5)
        except asyncio.TimeoutError:
            stray = None
        assert stray is None
    finally:
        await ours.flush()
        await theirs.flush()


def test_the_health_workers_channel_is_a_valid_name_per_director(monkeypatch):
    monkeypatch.delenv("DIRECTOR_CHANNEL_PREFIX", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://127.0.0.1/director_a")
    first = health_channel()
    monkeypatch.setenv("DATABASE_URL", "postgres://127.0.0.1/director_b")
    assert health_channel() != first
    from channels.layers import BaseChannelLayer

    assert BaseChannelLayer().require_valid_channel_name(first)
