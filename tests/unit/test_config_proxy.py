"""[proxy] settings: parsing, precedence (defaults < DIRECTOR < file < flags), unknown keys."""
import ipaddress

import pytest
from django.core.exceptions import ImproperlyConfigured

from balancer.conf import ProxySettings, director_settings, parse_proxy_values, parse_size
from proxy.addresses import ListenAddress
from proxy.headers import TrustedProxies


@pytest.mark.parametrize("text, size", [
    (0, 0), (1024, 1024), ("64MiB", 64 * 1024**2), ("10 MB", 10 * 1000**2), ("512KiB", 512 * 1024),
    ("100B", 100), ("1GiB", 1024**3), ("1gb", 1000**3), ("1.5KiB", 1536), ("7", 7),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1", -1, "10 XB", "", True, 1.5, "MiB"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_defaults():
    proxy = ProxySettings.build()
    assert proxy.listen == (ListenAddress("127.0.0.1", 8080),)
    assert proxy.admin_listen == ListenAddress("127.0.0.1", 8081)
    assert (proxy.pseudonym, proxy.trusted_proxies, proxy.max_request_body) == ("director", (), 64 * 1024**2)
    assert (proxy.header_timeout, proxy.workers, proxy.health_monitor) == (10.0, 1, True)
    assert (proxy.websocket_idle_timeout, proxy.websocket_max_message) == (3600.0, 16 * 1024**2)


def test_websocket_settings():
    proxy = ProxySettings.build({"websocket_idle_timeout": 90, "websocket_max_message": "1MiB"})
    assert (proxy.websocket_idle_timeout, proxy.websocket_max_message) == (90.0, 1024**2)
    _, errors = parse_proxy_values({"websocket_idle_timeout": 0, "websocket_max_message": "0B"})
    assert errors == {"websocket_idle_timeout": "must be a number of seconds > 0",
                      "websocket_max_message": "must be at least 1 byte"}


def test_precedence_django_setting_file_then_flags(settings):
    settings.DIRECTOR = {"pseudonym": "edge", "workers": 3, "header_timeout": 5}
    proxy = ProxySettings.build({"workers": 2, "listen": ["[::1]:9000", "unix:/tmp/d.sock"],
                                 "trusted_proxies": ["10.0.0.0/8", "::1"]},
                                {"workers": 4, "admin_listen": None})
    assert (proxy.pseudonym, proxy.workers, proxy.header_timeout) == ("edge", 4, 5.0)
    assert proxy.listen == (ListenAddress("::1", 9000), ListenAddress(path="/tmp/d.sock"))
    assert proxy.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    trusted = TrustedProxies(proxy.trusted_proxies)  # what the data plane builds from them
    assert trusted.contains("10.1.2.3") and trusted.contains("::1")
    assert not trusted.contains("192.168.0.1") and not trusted.contains("garbage")
    assert director_settings.pseudonym == "edge"


def test_every_bad_value_is_reported():
    with pytest.raises(ImproperlyConfigured) as info:
        ProxySettings.build({"workers": 0, "pseudonym": "two words", "colour": "red",
                             "trusted_proxies": ["10.0.0.0/33"], "listen": []})
    message = str(info.value)
    for key in ("proxy.workers", "proxy.pseudonym", "proxy.colour: unknown setting", "proxy.trusted_proxies", "proxy.listen"):
        assert key in message


def test_parse_proxy_values_messages():
    _, errors = parse_proxy_values({"header_timeout": 0, "admin_listen": ["127.0.0.1:1"], "health_monitor": "no"})
    assert errors == {"header_timeout": "must be a number of seconds > 0",
                      "admin_listen": 'must be one address like "127.0.0.1:8081"',
                      "health_monitor": "must be true or false"}


def test_unknown_names_and_keys_are_rejected(settings):
    with pytest.raises(AttributeError):
        director_settings.nonsense  # noqa: B018
    settings.DIRECTOR = {"listen": ["127.0.0.1:1"], "bogus": 1}
    with pytest.raises(ImproperlyConfigured, match="unknown keys bogus"):
        director_settings.listen  # noqa: B018
