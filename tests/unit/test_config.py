"""TOML config parsing: values, defaults, and every error named by its key path."""
import textwrap

import pytest

from balancer.config import ConfigError, load_config, parse_config
from balancer.validation import DIRECTOR_SETTINGS

GOOD = """
[proxy]
listen = ["127.0.0.1:8080", "[::1]:8080"]
max_request_body = "1MiB"

[directors.app]
scheduler = "least_load"
queue_limit = 16
health_check_expected_status = 204
backends = { app1 = "http://127.0.0.1:3001", app2 = { url = "http://[::1]:3002", capacity = 4, role = "backup" } }

[directors.pool]
dynamic = true
load = "var/pool.db"

[[routes]]
host = "Shop.Example.com"
pass = "app"
backend_from = "cookie:X-Backend"

[[routes]]
path = "/legacy/"
http = "127.0.0.1:3000"

[[routes]]
host = "*"
path = "/php/"
fcgi = "unix:/run/php/php-fpm.sock"
document_root = "/srv/www"
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text))
    return info.value.errors


def test_good_config_values_and_defaults(tmp_path):
    config = parse_config(GOOD, base_dir=tmp_path)
    app = config.directors["app"]
    assert not app.dynamic and app.load is None
    assert app.settings["scheduler"] == "least_load" and app.settings["queue_limit"] == 16
    assert app.settings["retry_after"] == DIRECTOR_SETTINGS["retry_after"].default
    assert app.settings["health_check_expected_status"] == "204"
    assert [name for name, _ in app.backends] == ["app1", "app2"]
    app1, app2 = dict(app.backends)["app1"], dict(app.backends)["app2"]
    assert app1 == {"url": "http://127.0.0.1:3001", "role": "active", "capacity": 0, "enabled": True,
                    "health_check_mode": "paranoid", "health_check_interval": 2.0, "terminate_protection": False,
                    "tls_verify": True, "tls_ca_file": "", "tls_server_name": ""}
    assert (app2["url"], app2["capacity"], app2["role"]) == ("http://[::1]:3002", 4, "backup")
    pool = config.directors["pool"]
    assert pool.dynamic and pool.load == str(tmp_path / "var/pool.db") and pool.backends == ()
    shop, legacy, php = config.routes
    assert (shop.host, shop.path, shop.pass_, shop.backend_from) == ("shop.example.com", "/", "app", ("cookie", "X-Backend"))
    assert (legacy.host, legacy.path, legacy.http, legacy.pass_) == (None, "/legacy/", "127.0.0.1:3000", None)
    assert (php.host, php.fcgi, php.document_root) == (None, "unix:/run/php/php-fpm.sock", "/srv/www")
    assert config.proxy["max_request_body"] == "1MiB"


def test_empty_file_is_valid():
    config = parse_config("")
    assert config.directors == {} and config.routes == () and config.proxy == {}


def test_toml_syntax_error_names_the_line():
    errors = errors_of("[proxy]\nlisten = [\"x\"\nworkers = 2\n")
    assert len(errors) == 1
    assert "invalid TOML" in errors[0] and "line" in errors[0]


def test_duplicate_keys_are_a_syntax_error():
    errors = errors_of("""
        [directors.app]
        backends = { a = "http://127.0.0.1:1" }
        [directors.app]
        queue_limit = 1
    """)
    assert len(errors) == 1 and "invalid TOML" in errors[0]


def test_every_error_is_collected_with_its_key_path():
    errors = errors_of("""
        colour = "blue"
        [proxy]
        max_request_body = "lots"
        workers = 0
        listen = ["nowhere"]
        bogus = 1
        [directors.app]
        queue_limit = -1
        passive_failure_threshold = 0
        scheduler = "fastest"
        connect_timeout = 0
        enabled = "yes"
        health_check_expected_status = "200-700"
        health_check_request_path = "status"
        wat = true
        backends = { app1 = "ftp://x", app2 = { url = "http://127.0.0.1:1", capacity = "4", colour = 1 }, app3 = { role = "backup" }, "bad name" = "http://127.0.0.1:2" }
        [directors."x y"]
        [[routes]]
        pass = "nope"
        [[routes]]
        path = "x"
        http = "127.0.0.1:99999"
        fcgi = "unix:/s"
        [[routes]]
        http = "127.0.0.1:3000"
        backend_from = "cookie:B"
        document_root = "relative"
        [[routes]]
        pass = "app"
        backend_from = "query:x"
        speed = 1
    """)
    expected_prefixes = [
        "colour: unknown key",
        "proxy.max_request_body: ",
        "proxy.workers: must be an integer ≥ 1",
        "proxy.listen: ",
        "proxy.bogus: unknown setting",
        "directors.app.queue_limit: must be an integer from 0 to 1000000",
        "directors.app.passive_failure_threshold: must be an integer from 1 to 1000",
        "directors.app.scheduler: 'fastest': must be one of rr, chance, least_load",
        "directors.app.connect_timeout: must be a number of seconds from 0.001 to 86400",
        "directors.app.enabled: must be true or false",
        "directors.app.health_check_expected_status: ",
        "directors.app.health_check_request_path: ",
        "directors.app.wat: unknown key",
        "directors.app.backends.app1.url: backend URL 'ftp://x'",
        "directors.app.backends.app2.capacity: must be an integer from 0 to 1000000",
        "directors.app.backends.app2.colour: unknown key",
        "directors.app.backends.app3.url: missing",
        "directors.app.backends.bad name: ",
        "directors.x y: ",
        "routes[0].pass: unknown director 'nope'",
        "routes[1]: needs exactly one of pass, http, fcgi (has http, fcgi)",
        "routes[1].path: 'x' must start with '/'",
        "routes[1].http: ",
        "routes[2].backend_from: only allowed together with pass",
        "routes[2].document_root: 'relative' must be an absolute path",
        "routes[3].speed: unknown key",
        "routes[3].backend_from: 'query:x' must be",
    ]
    for prefix in expected_prefixes:
        assert any(e.startswith(prefix) for e in errors), f"missing {prefix!r} in {errors}"
    assert len(errors) == len(expected_prefixes), errors


@pytest.mark.parametrize("text, error", [
    ("directors = 1", "directors: must be a table"),
    ("routes = 1", "routes: must be an array of tables"),
    ("routes = [1]", "routes[0]: must be a table"),
    ("[directors]\napp = 1", "directors.app: must be a table"),
    ("[directors.app]\nbackends = 1", "directors.app.backends: must be a table"),
    ("[directors.app]\nbackends = { a = 1 }", "directors.app.backends.a: must be a backend URL"),
    ("[directors.app]\nload = 'x.db'", "directors.app.load: only a dynamic director"),
    ("[directors.app]\ndynamic = 'yes'", "directors.app.dynamic: must be true or false"),
    ("[directors.app]\ndynamic = true\nbackends = { a = 'http://127.0.0.1:1' }", "directors.app.backends: a dynamic director"),
    ("[[routes]]\npath = 1\nhttp = '127.0.0.1:1'", "routes[0].path: must be a string"),
    ("[[routes]]\npath = '/'", "routes[0]: needs exactly one of pass, http, fcgi"),
    ("[[routes]]\nfcgi = 'http://127.0.0.1:1'", "routes[0].fcgi: target 'http://127.0.0.1:1': expected a fastcgi URL"),
    ("[directors.app]\nqueue_timeout = 1.5e400", "directors.app.queue_timeout: must be a number of seconds from 0 to 86400"),
    ("[directors.app]\nbackends = { a = { url = 'http://127.0.0.1:1', tls_verify = false } }",
     "directors.app.backends.a.tls_verify: only for https:// backends"),
    ("[directors.app]\nbackends = { a = { url = 'https://127.0.0.1:1', tls_ca_file = 'missing.pem' } }",
     "directors.app.backends.a.tls_ca_file: "),
    ("[directors.app]\nbackends = { a = { url = 'https://127.0.0.1:1', tls_server_name = 'a b' } }",
     "directors.app.backends.a.tls_server_name: "),
])
def test_single_errors(text, error):
    errors = errors_of(text)
    assert any(e.startswith(error) for e in errors), errors


def test_strict_types_do_not_coerce():
    errors = errors_of("[directors.app]\nqueue_limit = 16.0\nsticky_offline_mode = 1\nretry_after = true")
    assert sorted(errors) == sorted([
        "directors.app.queue_limit: must be an integer from 0 to 1000000",
        "directors.app.sticky_offline_mode: must be true or false",
        "directors.app.retry_after: must be a number of seconds from 0 to 86400",
    ])


def test_load_config_reads_file_and_reports_missing(tmp_path):
    path = tmp_path / "director.toml"
    path.write_text(GOOD)
    assert set(load_config(path).directors) == {"app", "pool"}
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert info.value.errors[0].startswith(f"{tmp_path / 'missing.toml'}: cannot read config file")


def test_example_config_is_valid():
    from tests.support.processes import REPO

    config = load_config(REPO / "director.example.toml")
    assert [name for name, _ in config.directors["app"].backends] == ["app1", "app2"]
    assert config.routes[0].pass_ == "app"


def test_https_backend_fields_and_a_ca_file_next_to_the_config(tmp_path):
    from tests.support.certs import make_certs

    make_certs(tmp_path / "tls")
    (tmp_path / "tls" / "Director test CA.pem").rename(tmp_path / "tls" / "ca.pem")
    config = parse_config(textwrap.dedent("""
        [directors.app.backends]
        s = { url = "https://[::1]:8443", tls_ca_file = "tls/ca.pem", tls_server_name = "backend.test" }
        lax = { url = "https://127.0.0.1:8443", tls_verify = false }
    """), base_dir=tmp_path)
    backends = dict(config.directors["app"].backends)
    assert (backends["s"]["tls_ca_file"], backends["s"]["tls_server_name"]) == (str(tmp_path / "tls/ca.pem"), "backend.test")
    assert (backends["lax"]["tls_verify"], backends["lax"]["tls_ca_file"]) == (False, "")
