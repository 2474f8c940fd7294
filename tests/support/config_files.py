"""Config file text for tests, built from Python values (TOML basic strings are JSON strings)."""
from __future__ import annotations

import json

STATIC_APP = '[directors.app]\nbackends = { a1 = "http://127.0.0.1:3001" }\n'


def with_routes(*routes: dict, directors: str = STATIC_APP) -> str:
    """`directors` (TOML text) followed by one [[routes]] table per dict."""
    tables = ["[[routes]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in route.items())
              for route in routes]
    return "\n".join([directors, *tables])
