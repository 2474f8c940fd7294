"""Config file text for tests, built from Python values (TOML basic strings are JSON strings)."""
from __future__ import annotations

import json

STATIC_APP = '[directors.app]\nbackends = { a1 = "http://127.0.0.1:3001" }\n'


def with_routes(*routes: dict, directors: str = STATIC_APP) -> str:
    """`directors` (TOML text) followed by one [[routes]] table per dict."""
    tables = ["[[routes]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in route.items())
              for route in routes]
    return "\n".join([directors, *tables])


def toml_value(value) -> str:
    """A Python value as TOML: lists and dicts (inline tables) nest; strings as JSON strings."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)


def app_config(*, proxy: dict | None = None, first_routes: tuple[dict, ...] = (), **ports: int) -> str:
    """`[proxy]` values, a static director "app" with one backend per `name=port` on loopback
    (checked every 0.5 s, online after one good check), `first_routes`, then the catch-all
    route to "app": the setup the operations tests start from."""
    head = "[proxy]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in proxy.items()) if proxy else ""
    backends = ", ".join(f'{name} = {{ url = "http://127.0.0.1:{port}", health_check_interval = 0.5 }}'
                         for name, port in ports.items())
    director = f"[directors.app]\nhealth_check_success_threshold = 1\nbackends = {{ {backends} }}\n"
    return head + with_routes(*first_routes, {"path": "/", "pass": "app"}, directors=director)
