"""Who may PURGE (proxy.cache_flow): loopback and [proxy] trusted_proxies; anyone else gets 405
and the object stays fresh. Peer addresses other than loopback need no network here."""
from __future__ import annotations

import asyncio
import os

import pytest

from proxy.cache import CachedObject
from proxy.cache_flow import CacheFlow
from proxy.cache_purge import apply_purge_message
from proxy.director import DirectorRuntime
from proxy.dispatch import Dispatcher
from proxy.headers import HeaderRules, TrustedProxies
from proxy.runtime import DirectorSettings
from proxy.upstream import UpstreamRequest


def director_with_object() -> DirectorRuntime:
    director = DirectorRuntime(1, "app")
    director.rebuild(DirectorSettings(cache_enabled=True), [])
    director.cache.store(b"example.org#/page#", (), (), CachedObject(200, [], b"body", 60.0))
    return director


def purge(director: DirectorRuntime, client_ip: str, path: bytes = b"/page") -> int:
    flow = CacheFlow(Dispatcher(HeaderRules(trusted=TrustedProxies(["10.1.0.0/16"]))))
    request = UpstreamRequest("PURGE", path, [(b"host", b"example.org")], client=(client_ip, 40000),
                              host="example.org")
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(flow.pass_request(director, request, send, None))
    return sent[0]["status"]


def fresh(director: DirectorRuntime) -> bool:
    return director.cache.find(b"example.org#/page#", ()).fresh(0.0)


@pytest.mark.parametrize("client_ip", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "10.1.2.3"])
def test_loopback_and_trusted_proxies_may_purge(client_ip):
    director = director_with_object()
    assert purge(director, client_ip) == 200
    assert not fresh(director)
    assert purge(director, client_ip, b"/other") == 404


@pytest.mark.parametrize("client_ip", ["192.0.2.7", "10.2.0.1", "fd00::1", ""])
def test_anyone_else_gets_405_and_the_object_stays(client_ip):
    director = director_with_object()
    assert purge(director, client_ip) == 405
    assert fresh(director)


class Plane:
    """What proxy.cache_purge reads of a DataPlane: its directors by name."""

    def __init__(self, director: DirectorRuntime):
        self.directors = {director.name: director}


def test_another_processs_purge_marks_the_copy_stale_and_our_own_echo_is_ignored():
    director = director_with_object()
    message = {"type": "cache.purge", "director": "app", "key": "example.org#/page#", "origin": os.getpid()}
    apply_purge_message(Plane(director), message)
    assert fresh(director)  # our own announcement, heard back: already applied
    apply_purge_message(Plane(director), {**message, "origin": -1})
    assert not fresh(director)
    apply_purge_message(Plane(director), {**message, "origin": -1, "director": "gone"})  # removed meanwhile: nothing


def test_a_purge_is_announced_with_its_key():
    director = director_with_object()
    heard = []
    flow = CacheFlow(Dispatcher(HeaderRules()))
    flow.announce_purge = lambda name, key: heard.append((name, key))
    request = UpstreamRequest("PURGE", b"/page", [(b"host", b"example.org")], client=("127.0.0.1", 1), host="example.org")

    async def send(message):
        pass

    asyncio.run(flow.pass_request(director, request, send, None))
    assert heard == [("app", b"example.org#/page#")]
