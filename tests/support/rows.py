"""Data-plane rows for unit tests, shaped as `proxy.config_source.ConfigSource.read_rows()` returns them."""
from __future__ import annotations

EMPTY_ROUTE = {"host": "", "path": "/", "director": "", "backend_from": "", "http": "", "fcgi": "",
               "document_root": "", "script_filename": ""}


def route_row(id_: int = 0, **fields) -> dict:
    """A route row ("" where the route sets nothing, as the database stores it)."""
    return {"id": id_, **EMPTY_ROUTE, **fields}
