"""What the workers of a `runproxy --workers N` under test publish about themselves.

The connections a test makes may all land on one worker; these ask every worker."""
from __future__ import annotations

import json

from tests.support.director import Director


def published(director: Director) -> dict[int, dict]:
    """Each worker's latest published figures (worker index -> snapshot)."""
    return {payload["worker"]: payload["snapshot"] for payload in
            (json.loads(path.read_text()) for path in (director.dir / "workers").glob("*/*.json"))}


def every_worker_sees(director: Director, workers: int, health: dict[str, str]) -> bool:
    """True once `workers` workers publish exactly these backend states."""
    views = published(director)
    return len(views) == workers and all(
        {b["name"]: b["health"] for d in snapshot["directors"] for b in d["backends"]} == health
        for snapshot in views.values())
