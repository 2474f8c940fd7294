"""Live figures shared between the worker processes of one `runproxy --workers N`.

Each worker's data plane counts only the requests it served. Every PUBLISH_INTERVAL seconds
a worker writes its figures (livestats snapshot + its health monitor's stats) to a file of
its own in the directory its supervisor named (`DIRECTOR_WORKERS_DIR`); whichever worker
answers an admin, API, status or metrics request adds the other workers' latest files to
its own live figures (`merge_snapshots`). Counters and current values add up; the `max`
of a load or queue is the largest one worker saw (per-worker peaks do not add). Files older
than STALE_AFTER seconds (a worker that died) are ignored. Outside `--workers` nothing here
is active and livestats sees this process only.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from proxy.supervisor import DIRECTORY_ENV, INDEX_ENV

log = logging.getLogger("director.workers")

PUBLISH_INTERVAL = 1.0
STALE_AFTER = 5.0
READ_CACHE_S = 0.5  # peers' files are read at most this often per process


def directory() -> Path | None:
    value = os.environ.get(DIRECTORY_ENV)
    return Path(value) if value else None


def worker_index() -> int | None:
    value = os.environ.get(INDEX_ENV)
    return int(value) if value is not None and value.isdigit() else None


# -- publishing -------------------------------------------------------------------------------

def write_payload(folder: Path, index: int, snapshot: dict | None, health: dict | None) -> None:
    """Replace this worker's file atomically (readers never see half a file)."""
    payload = {"worker": index, "pid": os.getpid(), "written_at": time.time(),
               "snapshot": snapshot, "health": health}
    target = folder / f"{index}.json"
    partial = folder / f".{index}.json.tmp"
    partial.write_text(json.dumps(payload, separators=(",", ":")))
    os.replace(partial, target)


async def publish_forever(folder: Path, index: int, collect) -> None:
    """Write `collect()` -> (snapshot, health) every PUBLISH_INTERVAL seconds."""
    while True:
        try:
            snapshot, health = collect()
            write_payload(folder, index, snapshot, health)
        except OSError as exc:
            log.warning("cannot publish worker %d figures: %s", index, exc)
        await asyncio.sleep(PUBLISH_INTERVAL)


# -- reading ---------------------------------------------------------------------------------

class Peers:
    """The other workers' latest payloads, indexed for lookups by director and backend id."""

    def __init__(self, payloads: list[dict]):
        self.payloads = payloads
        self.directors: dict[int, list[dict]] = {}
        self.backends: dict[int, list[dict]] = {}
        self.health: dict[int, dict] = {}
        for payload in payloads:
            for director in (payload.get("snapshot") or {}).get("directors", []):
                self.directors.setdefault(director["id"], []).append(director)
                for backend in director.get("backends", []):
                    self.backends.setdefault(backend["id"], []).append(backend)
            for key, stats in (payload.get("health") or {}).items():
                self.health[int(key)] = stats


_EMPTY = Peers([])
_cache: tuple[float, Peers] | None = None


def peers(now: float | None = None) -> Peers:
    """Fresh payloads of the other workers (cached READ_CACHE_S); empty outside --workers."""
    global _cache
    folder, own = directory(), worker_index()
    if folder is None:
        return _EMPTY
    now = time.time() if now is None else now
    if _cache is not None and now - _cache[0] < READ_CACHE_S:
        return _cache[1]
    payloads = []
    for path in folder.glob("*.json"):
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # gone or replaced between listing and reading
        if payload.get("worker") != own and now - payload.get("written_at", 0) <= STALE_AFTER:
            payloads.append(payload)
    _cache = (now, Peers(payloads))
    return _cache[1]


# -- merging ---------------------------------------------------------------------------------

_COUNTED = ("load", "queued", "dropped", "failures", "responses")  # the rest is this worker's


def merge_counts(own: dict, others: list[dict]) -> dict:
    """Sum the counted figures key by key; a `max` is the largest, not a sum."""
    merged = dict(own)
    for other in others:
        for key in _COUNTED:
            value = other.get(key)
            if isinstance(value, dict):
                merged[key] = _merge_load(merged.get(key) or {}, value)
            elif isinstance(value, int):
                merged[key] = merged.get(key, 0) + value
    return merged


def _merge_load(mine: dict, other: dict) -> dict:
    result = dict(mine)
    for key, value in other.items():
        if key == "max":
            result[key] = max(result.get(key, 0), value)
        else:
            result[key] = result.get(key, 0) + value
    return result


def merge_snapshots(own: dict, others: Peers) -> dict:
    """This worker's snapshot with the other workers' counts added (shape: livestats)."""
    if not others.payloads:
        return own
    directors = []
    for director in own["directors"]:
        merged = merge_counts(director, others.directors.get(director["id"], []))
        merged["backends"] = [merge_counts(b, others.backends.get(b["id"], [])) for b in director["backends"]]
        directors.append(merged)
    return {"directors": directors}
