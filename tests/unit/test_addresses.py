"""Backend URLs (SPEC §4), road-warrior targets and listen addresses."""
import pytest

from proxy.addresses import BackendAddress, BackendTLS, ListenAddress, backend_address, parse_backend_url, parse_listen, parse_target


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:3001", BackendAddress("http", host="127.0.0.1", port=3001)),
    ("http://127.0.0.1:3001/", BackendAddress("http", host="127.0.0.1", port=3001)),
    ("http://[::1]:3002", BackendAddress("http", host="::1", port=3002)),
    ("http://[2001:db8::5]:80", BackendAddress("http", host="2001:db8::5", port=80)),
    ("http://backend-1.example.com:8080", BackendAddress("http", host="backend-1.example.com", port=8080)),
    ("http://localhost:65535", BackendAddress("http", host="localhost", port=65535)),
    ("http+unix:///run/app.sock", BackendAddress("http", path="/run/app.sock")),
    ("fastcgi://10.0.0.1:9000", BackendAddress("fastcgi", host="10.0.0.1", port=9000)),
    ("fastcgi://[fe80::1]:9000", BackendAddress("fastcgi", host="fe80::1", port=9000)),
    ("fastcgi+unix:///run/php/php-fpm.sock", BackendAddress("fastcgi", path="/run/php/php-fpm.sock")),
    ("https://127.0.0.1:8443", BackendAddress("http", host="127.0.0.1", port=8443, tls=BackendTLS())),
    ("https://[::1]:443/", BackendAddress("http", host="::1", port=443, tls=BackendTLS())),
    ("https://api.example.com:443", BackendAddress("http", host="api.example.com", port=443, tls=BackendTLS())),
])
def test_backend_url_forms(url, expected):
    address = parse_backend_url(url)
    assert address == expected
    assert parse_backend_url(address.url) == address  # canonical form parses back


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1:21", "scheme must be one of"),
    ("https+unix:///run/app.sock", "scheme must be one of"),
    ("HTTPS://127.0.0.1:443", "scheme must be one of"),
    ("https://127.0.0.1", "expected HOST:PORT"),
    ("https://::1:443", "need brackets"),
    ("https://127.0.0.1:443/api", "no path, query or user"),
    ("127.0.0.1:3001", "scheme must be one of"),
    ("http://127.0.0.1:0", "out of range"),
    ("http://127.0.0.1:65536", "out of range"),
    ("http://127.0.0.1:port", "not a number"),
    ("http://127.0.0.1", "expected HOST:PORT"),
    ("http://::1:80", "need brackets"),
    ("http://[::1]80", "expected [IPv6]:PORT"),
    ("http://[not-v6]:80", "is not an IPv6 address"),
    ("http://under_score.example:80", "is not a valid host"),
    ("http://-bad.example:80", "is not a valid host"),
    ("http://127.0.0.1:80/path", "no path, query or user"),
    ("http://user@127.0.0.1:80", "no path, query or user"),
    ("http://127.0.0.1:80?x=1", "no path, query or user"),
    ("http+unix://relative.sock", "absolute socket path"),
    ("fastcgi+unix:///", "absolute socket path"),
])
def test_backend_url_rejections_name_the_url(url, message):
    with pytest.raises(ValueError) as info:
        parse_backend_url(url)
    assert message in str(info.value) and repr(url) in str(info.value)


def test_backend_url_must_be_a_string():
    with pytest.raises(ValueError, match="must be a string"):
        parse_backend_url(3001)


def test_ipv6_url_keeps_brackets_in_canonical_form():
    assert parse_backend_url("fastcgi://[::1]:9000").url == "fastcgi://[::1]:9000"
    assert parse_backend_url("https://[2001:db8::5]:443").url == "https://[2001:db8::5]:443"
    assert str(parse_backend_url("http+unix:///a.sock")) == "http+unix:///a.sock"


@pytest.mark.parametrize("text, protocol, expected", [
    ("127.0.0.1:3000", "http", BackendAddress("http", host="127.0.0.1", port=3000)),
    ("[::1]:3000", "http", BackendAddress("http", host="::1", port=3000)),
    ("unix:/run/php/php-fpm.sock", "fastcgi", BackendAddress("fastcgi", path="/run/php/php-fpm.sock")),
    ("fastcgi://127.0.0.1:9000", "fastcgi", BackendAddress("fastcgi", host="127.0.0.1", port=9000)),
])
def test_targets(text, protocol, expected):
    assert parse_target(text, protocol) == expected


@pytest.mark.parametrize("text, protocol, message", [
    ("http://127.0.0.1:1", "fastcgi", "expected a fastcgi URL"),
    ("unix:relative", "http", "unix:/absolute/path"),
    ("127.0.0.1:70000", "http", "out of range"),
    (None, "http", "must be a string"),
])
def test_target_rejections(text, protocol, message):
    with pytest.raises(ValueError, match=message):
        parse_target(text, protocol)


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ListenAddress(host="127.0.0.1", port=8080)),
    ("localhost:8080", ListenAddress(host="127.0.0.1", port=8080)),
    ("[::]:8080", ListenAddress(host="::", port=8080)),
    ("0.0.0.0:80", ListenAddress(host="0.0.0.0", port=80)),
    ("unix:/tmp/director.sock", ListenAddress(path="/tmp/director.sock")),
    ("tls://127.0.0.1:8443", ListenAddress(host="127.0.0.1", port=8443, tls=True)),
    ("tls://[::1]:8443", ListenAddress(host="::1", port=8443, tls=True)),
])
def test_listen_forms(text, expected):
    address = parse_listen(text)
    assert address == expected
    assert parse_listen(str(address)) == address


@pytest.mark.parametrize("text, message", [
    ("example.com:80", "host must be an IP address"),
    ("127.0.0.1:0", "out of range"),
    ("8080", "expected HOST:PORT"),
    ("unix:tmp.sock", "unix:/absolute/path"),
    ("tls://unix:/tmp/d.sock", "expected tls://HOST:PORT"),
    ("tls://tls://127.0.0.1:1", "expected tls://HOST:PORT"),
    ("tls://::1:8443", "IPv6 addresses need brackets"),
])
def test_listen_rejections(text, message):
    with pytest.raises(ValueError, match=message):
        parse_listen(text)


def test_https_is_http_over_tls_and_tls_settings_are_part_of_the_address():
    plain = parse_backend_url("http://127.0.0.1:8443")
    secure = parse_backend_url("https://127.0.0.1:8443")
    assert secure.protocol == "http" and secure.tls == BackendTLS(verify=True, ca_file="", server_name="")
    assert secure != plain  # never one pool for both
    tuned = backend_address("https://127.0.0.1:8443", False, "/etc/ca.pem", "backend.test")
    assert tuned.tls == BackendTLS(False, "/etc/ca.pem", "backend.test")
    assert tuned != secure and hash(tuned) != hash(secure)
    assert tuned.url == "https://127.0.0.1:8443"  # TLS settings are not part of the URL
    # TLS settings mean nothing to a plain address: it is returned unchanged
    assert backend_address("http://127.0.0.1:8443", False, "/etc/ca.pem", "x") == plain
    assert plain.with_tls(False, "/etc/ca.pem", "x") is plain


def test_road_warrior_https_target_is_an_http_target():
    assert parse_target("https://127.0.0.1:8443", "http").tls == BackendTLS()
