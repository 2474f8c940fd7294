"""The last configuration this node applied, kept on local disk (SPEC §11 "Database away").

Every time a process applies rows from the database it writes them here (temp file +
rename, owner-only: the rows name every backend). A process that starts or restarts while
the database is unreachable serves from this file instead of refusing to start, and goes
back to the database as soon as it answers. The rows are what the data plane's
`apply_rows()` takes, as JSON.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

log = logging.getLogger("director.proxy")

SNAPSHOT_FILE = "config-snapshot.json"
FORMAT = 3  # 3: the rows include the routes (proxy.state.ConfigRows); 2: datetimes tagged
DATETIME = "$datetime"


class SnapshotStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def in_directory(cls, directory: Path) -> "SnapshotStore":
        return cls(Path(directory) / SNAPSHOT_FILE)

    def save(self, rows: tuple) -> None:
        """Replace the file atomically; a failure is logged, never raised (serving goes on)."""
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            # dumps, not dump: json.dump encodes in Python with closures that form reference cycles
            text = json.dumps({"format": FORMAT, "rows": list(rows)}, default=_json_value, separators=(",", ":"))
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.replace(partial, self.path)
        except OSError as exc:
            log.warning("cannot save the configuration snapshot %s: %s", self.path, exc)

    def load(self) -> tuple | None:
        """The saved rows, or None when there is no usable snapshot."""
        try:
            data = json.loads(self.path.read_text(), object_hook=_decode)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring the configuration snapshot %s: %s", self.path, exc)
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("rows"), list):
            log.warning("ignoring the configuration snapshot %s: unknown format", self.path)
            return None
        return tuple(data["rows"])

    def saved_at(self) -> str:
        try:
            return datetime.fromtimestamp(self.path.stat().st_mtime).isoformat(timespec="seconds")
        except OSError:
            return "?"


def _json_value(value):
    if isinstance(value, datetime):
        return {DATETIME: value.isoformat()}
    raise TypeError(f"cannot store {type(value).__name__} in the snapshot")


def _decode(obj: dict):
    """Timestamps come back as datetimes (health stamps are compared with the database's)."""
    if len(obj) == 1 and DATETIME in obj:
        return datetime.fromisoformat(obj[DATETIME])
    return obj
