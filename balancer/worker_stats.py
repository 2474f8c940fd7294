"""Live figures shared between the worker processes of one `runproxy --workers N`.

Each worker's data plane counts only the requests it served. Every PUBLISH_INTERVAL seconds
a worker writes its figures (livestats snapshot + its health monitor's stats) to a file of
its own (named by its pid) in the directory its supervisor named (`DIRECTOR_WORKERS_DIR`);
whichever worker answers an admin, API, status or metrics request adds the other workers'
latest files to its own live figures (`merge_snapshots`). Counters and current values add
up; the `max` of a load or queue is the largest one worker saw (per-worker peaks do not
add). Files older than STALE_AFTER seconds are ignored. Outside `--workers` nothing here is
active and livestats sees this process only.

Counters stay monotonic when a worker dies or a reload replaces it: every publishing worker
folds the last file of a process that is gone into RETIRED (totals only: nothing of a dead
process is current), which readers add like one more worker.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
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
RETIRED = "retired-counts"  # not *.json: the totals of workers that are gone
LOCK = ".fold.lock"


def directory() -> Path | None:
    value = os.environ.get(DIRECTORY_ENV)
    return Path(value) if value else None


def worker_index() -> int | None:
    value = os.environ.get(INDEX_ENV)
    return int(value) if value is not None and value.isdigit() else None


# -- publishing -------------------------------------------------------------------------------

def write_payload(folder: Path, index: int, snapshot: dict | None, health: dict | None, pid: int | None = None) -> None:
    """Replace this worker's file atomically (readers never see half a file)."""
    pid = os.getpid() if pid is None else pid
    payload = {"worker": index, "pid": pid, "written_at": time.time(), "snapshot": snapshot, "health": health}
    _write_json(folder / f"{index}-{pid}.json", payload)


def _write_json(target: Path, payload: dict) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(payload, separators=(",", ":")))
    os.replace(partial, target)


async def publish_forever(folder: Path, index: int, collect) -> None:
    """Write `collect()` -> (snapshot, health) every PUBLISH_INTERVAL seconds, and fold the
    files of workers that are gone."""
    while True:
        try:
            snapshot, health = collect()
            write_payload(folder, index, snapshot, health)
            fold_gone(folder)
        except OSError as exc:
            log.warning("cannot publish worker %d figures: %s", index, exc)
        await asyncio.sleep(PUBLISH_INTERVAL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fold_gone(folder: Path) -> int:
    """Add the counters of every worker file whose process is gone to RETIRED, then remove
    the file (under a lock: two workers never fold the same file twice). Returns how many."""
    gone = []
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            payload = json.loads(path.read_text())
            if not _alive(int(payload.get("pid", 0))):
                gone.append(path)
    if not gone:
        return 0
    with open(folder / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        retired, retired_health = _read_retired(folder), _read_retired_health(folder)
        folded = 0
        for path in gone:
            try:
                payload = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # folded by another worker meanwhile
            retired = retire_snapshot(retired, payload.get("snapshot") or {"directors": []})
            retired_health = add_check_totals(retired_health, payload.get("health") or {})
            folded += 1
            _write_json(folder / RETIRED, {"worker": "retired", "pid": 0, "snapshot": retired,
                                           "health": retired_health})
            path.unlink()
    return folded


def _read_retired(folder: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((folder / RETIRED).read_text())["snapshot"]
    return {"directors": []}


def _read_retired_health(folder: Path) -> dict:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((folder / RETIRED).read_text()).get("health") or {}
    return {}


# The health monitor's counted figures (balancer.health.history.CheckHistory.as_dict).
_CHECK_TOTALS = ("checks", "duration_buckets", "duration_sum")


def add_check_totals(totals: dict, stats: dict) -> dict:
    """`totals` (by backend id, as str: JSON keys) with the check counts and duration
    histograms of `stats` added: a monitor that is gone keeps counting in /metrics."""
    result = {key: dict(value) for key, value in totals.items()}
    for backend_id, figures in stats.items():
        kept = result.setdefault(str(backend_id), {"checks": 0, "duration_buckets": [], "duration_sum": 0.0})
        kept["checks"] += figures.get("checks", 0)
        kept["duration_sum"] += figures.get("duration_sum", 0.0)
        kept["duration_buckets"] = _add_lists(kept["duration_buckets"], figures.get("duration_buckets") or [])
    return result


def _add_lists(a: list, b: list) -> list:
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    return [x + (shorter[i] if i < len(shorter) else 0) for i, x in enumerate(longer)]


def with_retired_checks(stats: dict, retired: dict) -> dict:
    """The live monitor's `stats` (by backend id) with the totals of monitors that are gone."""
    if not retired:
        return stats
    result = {}
    for backend_id, figures in stats.items():
        old = retired.get(str(backend_id))
        if old is None:
            result[backend_id] = figures
            continue
        result[backend_id] = {**figures, "checks": figures.get("checks", 0) + old["checks"],
                              "duration_sum": figures.get("duration_sum", 0.0) + old["duration_sum"],
                              "duration_buckets": _add_lists(figures.get("duration_buckets") or [],
                                                             old["duration_buckets"])}
    return result


def retire_snapshot(retired: dict, gone: dict) -> dict:
    """`retired` with the totals of `gone` added (current values of the dead are 0)."""
    directors = {d["id"]: d for d in retired["directors"]}
    for director in gone.get("directors", []):
        kept = directors.get(director["id"])
        merged = _totals_only(merge_counts(kept, [director]) if kept else director)
        backends = {b["id"]: b for b in (kept or {}).get("backends", [])}
        for backend in director.get("backends", []):
            old = backends.get(backend["id"])
            backends[backend["id"]] = _totals_only(merge_counts(old, [backend]) if old else backend)
        merged["backends"] = list(backends.values())
        directors[director["id"]] = merged
    return {"directors": list(directors.values())}


def _totals_only(figures: dict) -> dict:
    result = dict(figures)
    for key in ("load", "queued"):
        if isinstance(result.get(key), dict):
            result[key] = {**result[key], "current": 0}
    if isinstance(result.get("buckets"), dict):  # proxy.buckets figures: tokens and queues are now's
        result["buckets"] = {name: {**figures, "used": 0, "queued": 0} for name, figures in result["buckets"].items()}
    if isinstance(result.get("cache"), dict):  # a gone worker's cache went with it
        result["cache"] = {**result["cache"], "objects": 0, "bytes": 0}
    return result


# -- reading ---------------------------------------------------------------------------------

class Peers:
    """The other workers' latest payloads, indexed for lookups by director and backend id."""

    def __init__(self, payloads: list[dict]):
        self.payloads = payloads
        self.directors: dict[int, list[dict]] = {}
        self.backends: dict[int, list[dict]] = {}
        self.health: dict[int, dict] = {}
        self.retired_health: dict = {}  # check totals of monitors that are gone (add_check_totals)
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
    folder, own = directory(), os.getpid()
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
        if payload.get("pid") != own and now - payload.get("written_at", 0) <= STALE_AFTER:
            payloads.append(payload)
    retired = _read_retired(folder)
    if retired["directors"]:
        payloads.append({"worker": "retired", "snapshot": retired})
    found = Peers(payloads)
    found.retired_health = _read_retired_health(folder)
    _cache = (now, found)
    return found


# -- merging ---------------------------------------------------------------------------------

# The figures summed across workers; the rest is this worker's. "bytes", "durations" and
# "upstream" are proxy.request_metrics.Traffic's (histogram counts add bucket by bucket);
# "cache" is proxy.cache's (each worker has a store of its own: objects and bytes add too).
_COUNTED = ("load", "queued", "dropped", "failures", "responses", "bytes", "durations", "upstream", "buckets", "cache")


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
        elif isinstance(value, dict):
            result[key] = _merge_load(result.get(key) or {}, value)
        elif isinstance(value, list):
            mine_list = result.get(key) or [0] * len(value)
            result[key] = [a + b for a, b in zip(mine_list, value, strict=False)]
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
