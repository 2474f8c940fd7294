"""The management listener accepts only `[proxy] admin_hosts` as Host and Origin (SPEC §13):
by default the admin listen address, localhost and 127.0.0.1; a foreign Host is a 400, a
foreign Origin a 403, and the status websocket refuses both."""
from __future__ import annotations

import json
import re

import aiohttp
import pytest
from yarl import URL

from balancer.admin_hosts import parse_admin_hosts
from balancer.config import ConfigError, parse_config
from tests.support.director import Director
from tests.support.waiting import wait_for

CONFIG = '[directors.app]\nbackends = { a1 = "http://127.0.0.1:1" }\n'


@pytest.fixture(scope="module")
def director(tmp_path_factory):
    d = Director(tmp_path_factory.mktemp("admin-hosts"), CONFIG).start()
    try:
        yield d
    finally:
        d.stop()


def admin_get(d: Director, path: str, **headers):
    status, answer_headers, body = d.get(path, port=d.admin_port, headers=headers)
    return status, answer_headers.get("content-type", ""), body


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "localhost:8081", "LOCALHOST"])
def test_the_default_hosts_are_served(director, host):
    assert admin_get(director, "/-/ready", Host=host)[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.2", "director.example.com:8081"])
def test_a_foreign_host_is_400_also_under_the_api(director, host):
    assert admin_get(director, "/-/ready", Host=host)[0] == 400
    status, content_type, body = admin_get(director, "/api/v1/", Host=host)
    assert (status, content_type) == (400, "application/json") and json.loads(body)["detail"]


def test_a_foreign_origin_is_403(director):
    status, content_type, body = admin_get(director, "/api/v1/", Origin="https://evil.example")
    assert (status, content_type) == (403, "application/json"), body
    assert admin_get(director, "/admin/login/", Origin="null")[0] == 403
    assert admin_get(director, "/api/v1/", Origin=f"http://127.0.0.1:{director.admin_port}")[0] == 200


async def test_the_status_websocket_refuses_a_foreign_origin_or_host(director):
    key = re.search(r"^session (\S+)$", director.shell("""
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
        from django.contrib.auth.models import User
        from django.contrib.sessions.backends.db import SessionStore
        user = User.objects.create_superuser("hosts-admin", "a@x", "pw-for-the-hosts-test")
        store = SessionStore()
        store.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                      HASH_SESSION_KEY: user.get_session_auth_hash()})
        store.create()
        print("session", store.session_key)
    """), re.M).group(1)
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({"sessionid": key}, response_url=URL(director.admin_url))
    async with aiohttp.ClientSession(director.admin_url, cookie_jar=jar) as session:
        async with session.ws_connect("/ws/status/", origin=director.admin_url) as socket:
            assert json.loads((await socket.receive(timeout=10)).data)["type"] == "history"
        for headers in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect("/ws/status/", headers=headers)
            assert refused.value.status == 403


def test_configured_hosts_replace_the_default_and_a_reload_changes_them(tmp_path):
    config = '[proxy]\nadmin_hosts = ["director.example.com", ".ops.example"]\n' + CONFIG
    d = Director(tmp_path, config).start()
    try:
        assert admin_get(d, "/-/ready", Host="director.example.com")[0] == 200
        assert admin_get(d, "/-/ready", Host="eu.ops.example:8081")[0] == 200
        assert admin_get(d, "/-/ready", Host="127.0.0.1")[0] == 400
        d.config_path.write_text('[proxy]\nadmin_hosts = ["new.example.com"]\n' + CONFIG)
        assert d.manage("reloadproxy").returncode == 0
        wait_for(lambda: admin_get(d, "/-/ready", Host="new.example.com")[0] == 200, 15, what="the reload")
        assert admin_get(d, "/-/ready", Host="director.example.com")[0] == 400
    finally:
        d.stop()


@pytest.mark.parametrize("value", ['"localhost"', "[]", '["a b"]', '["[::zz]"]', '["evil.example/x"]', "[1]"])
def test_bad_admin_hosts_are_config_errors_naming_the_key(value):
    with pytest.raises(ConfigError) as info:
        parse_config(f"[proxy]\nadmin_hosts = {value}\n")
    assert any(e.startswith("proxy.admin_hosts: ") for e in info.value.errors), info.value.errors


def test_entries_are_normalised():
    assert parse_admin_hosts(["Director.Example.COM", "[::1]", "10.0.0.5"]) == (
        "director.example.com", "[::1]", "10.0.0.5")
