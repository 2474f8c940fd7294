"""Node-wide slot and queue counts under `--workers` (SPEC §11 "Limits per node").

A backend's `capacity` and a director's `queue_limit` hold for the node, whatever the number
of workers: the supervisor creates one small shared table (a file it maps, in its workers
directory) and gives each worker process a column of its own. A row is keyed by a backend
id (in-flight requests per column) or by a director id (waiting requests per column); the
buckets of proxy.buckets have rows of their own above BUCKET_KEYS (tokens in use and waiting
requests, per column), a key range no backend or director id reaches, and so have the open
connections to a FastCGI backend address (proxy.upstream.connection_budget).

Each process writes only its own column, so a decrement or a queue count needs no lock.
Taking a slot is a check-then-increment over every column, done under a byte-range lock on
that row (`fcntl.lockf`: two system calls, only for backends with a capacity). When a
process dies the supervisor zeroes its column: nothing it held stays counted.

Rows are found by open addressing from the key; a row, once keyed, keeps its key (ids are
never reused). A full table, which would take ROWS distinct capacity-limited backends and
directors in one supervisor's life, falls back to per-worker limits with a warning.
"""
from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import zlib
from pathlib import Path

from proxy.node_wake import Doorbells

log = logging.getLogger("director.workers")

COLUMNS = 64  # worker processes at once, old and new ones of a reload included
ROWS = 8192
KEY = struct.Struct("<q")
COUNTS = struct.Struct(f"<{COLUMNS}H")
ROW = KEY.size + COUNTS.size
SIZE = ROWS * ROW
FILE = "node-slots"
COLUMN_ENV = "DIRECTOR_SLOT_COLUMN"
BUCKET_KEYS = 1 << 48  # bucket rows: BUCKET_KEYS + (kind << 40) + id; database ids stay below 2**40
_BUCKET_TOKENS, _ROOT_TOKENS, _BUCKET_WAITING, _ROOT_WAITING, _CONNECTIONS = 1, 2, 3, 4, 5


def bucket_key(bucket_id: int) -> int:
    """Row of the tokens in use by a bucket (and those below it)."""
    return BUCKET_KEYS + (_BUCKET_TOKENS << 40) + bucket_id


def root_key(director_id: int) -> int:
    """Row of the tokens in use by a director's root bucket (all of its buckets)."""
    return BUCKET_KEYS + (_ROOT_TOKENS << 40) + director_id


def bucket_waiting_key(bucket_id: int) -> int:
    return BUCKET_KEYS + (_BUCKET_WAITING << 40) + bucket_id


def root_waiting_key(director_id: int) -> int:
    return BUCKET_KEYS + (_ROOT_WAITING << 40) + director_id


def connections_key(url: str) -> int:
    """Row of the connections open to a backend address (its URL's CRC-32: below 2**40)."""
    return BUCKET_KEYS + (_CONNECTIONS << 40) + zlib.crc32(url.encode())


def create(directory: Path) -> Path:
    """The supervisor's empty table (zero-filled)."""
    path = Path(directory) / FILE
    with open(path, "wb") as table:
        table.truncate(SIZE)
    return path


class NodeSlots:
    def __init__(self, path: Path, column: int):
        if not 0 <= column < COLUMNS:
            raise ValueError(f"column {column} outside 0..{COLUMNS - 1}")
        self.column = column
        self.path = Path(path)
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, SIZE)
        self._rows: dict[int, int] = {}  # key -> offset
        self._full_warned = False
        self.doorbells: Doorbells | None = None  # a worker's (from_environment), not the supervisor's

    @classmethod
    def from_environment(cls, directory: Path | None) -> NodeSlots | None:
        column = os.environ.get(COLUMN_ENV)
        if directory is None or column is None or not (Path(directory) / FILE).exists():
            return None
        slots = cls(Path(directory) / FILE, int(column))
        slots.doorbells = Doorbells(slots.path, slots.column)
        return slots

    def close(self) -> None:
        if self.doorbells is not None:
            self.doorbells.close()
        self._map.close()
        os.close(self._fd)

    # -- rows --------------------------------------------------------------------------

    def _row(self, key: int) -> int | None:
        offset = self._rows.get(key)
        if offset is not None:
            return offset
        start = (key * 2654435761) % ROWS
        for step in range(ROWS):
            offset = ((start + step) % ROWS) * ROW
            found = KEY.unpack_from(self._map, offset)[0]
            if found == 0:
                with self._locked(offset):
                    found = KEY.unpack_from(self._map, offset)[0]
                    if found == 0:
                        KEY.pack_into(self._map, offset, key)
                        found = key
            if found == key:
                self._rows[key] = offset
                return offset
        if not self._full_warned:
            log.warning("node slot table full: capacities are counted per worker from now on")
            self._full_warned = True
        return None

    def _locked(self, offset: int):
        return _RowLock(self._fd, offset)

    def _counts(self, offset: int) -> tuple[int, ...]:
        return COUNTS.unpack_from(self._map, offset + KEY.size)

    def _add(self, offset: int, delta: int) -> None:
        at = offset + KEY.size + 2 * self.column
        value = struct.unpack_from("<H", self._map, at)[0] + delta
        struct.pack_into("<H", self._map, at, max(0, min(0xFFFF, value)))

    def _add_below(self, offset: int | None, limit: int) -> bool:
        """Count one more in this process's column if the row's total is below `limit`; the
        check and the count happen under the row's lock. No row (table full): True."""
        if offset is None:
            return True
        with self._locked(offset):
            if sum(self._counts(offset)) >= limit:
                return False
            self._add(offset, 1)
        return True

    # -- backends: in-flight requests --------------------------------------------------

    def try_take(self, backend_id: int, capacity: int) -> bool:
        """Count one more request on the backend if the node has fewer than `capacity`."""
        return self._add_below(self._row(backend_id), capacity)

    def take(self, backend_id: int) -> None:
        """Count a request whatever the capacity (a pinned one: `backend_from`)."""
        offset = self._row(backend_id)
        if offset is not None:
            self._add(offset, 1)

    def give_back(self, backend_id: int) -> None:
        offset = self._row(backend_id)
        if offset is not None:
            self._add(offset, -1)

    def in_flight(self, backend_id: int) -> tuple[int, int]:
        """(this process's, the node's) requests on the backend."""
        offset = self._row(backend_id)
        if offset is None:
            return 0, 0
        counts = self._counts(offset)
        return counts[self.column], sum(counts)

    # -- directors: waiting requests ---------------------------------------------------

    def set_waiting(self, director_id: int, count: int) -> None:
        offset = self._row(-director_id)
        if offset is not None:
            struct.pack_into("<H", self._map, offset + KEY.size + 2 * self.column, min(0xFFFF, count))

    def try_wait(self, director_id: int, queue_limit: int) -> bool:
        """Count one more waiting request of this process for the director if the node has
        fewer than `queue_limit` waiting. Check and count happen under the row's lock, so
        two workers queueing at the same moment cannot both take the last place."""
        return self._add_below(self._row(-director_id), queue_limit)

    def waiting(self, director_id: int) -> tuple[int, int]:
        """(waiting in the node, processes with a waiting request) for the director."""
        offset = self._row(-director_id)
        if offset is None:
            return 0, 0
        counts = self._counts(offset)
        return sum(counts), COLUMNS - counts.count(0)

    def offer(self, director_id: int, backend_id: int, capacity: int) -> None:
        """A slot of the backend was freed and this process had no waiter to take it: wake
        the other processes with requests waiting for the director (proxy.node_wake)."""
        waiting = self._row(-director_id) if self.doorbells is not None else None
        if waiting is None:
            return
        counts = self._counts(waiting)
        if sum(counts) == counts[self.column]:
            return  # nobody else waits (the common case: one look at one row)
        offset = self._row(backend_id)
        if offset is not None and sum(self._counts(offset)) >= capacity:
            return  # taken meanwhile
        self._ring_others(counts)

    # -- buckets (proxy.buckets): tokens along a path, waiting requests -----------------

    def try_take_all(self, lock_key: int, limits: list[tuple[int, int]]) -> bool | None:
        """Count one more in every row of `limits` ((key, limit) pairs) if each has fewer
        than its limit, all under the lock of the `lock_key` row (a director's root: every
        token of its buckets is taken under it). None when the table is full."""
        lock = self._row(lock_key)
        offsets = [self._row(key) for key, _ in limits]
        if lock is None or None in offsets:
            return None
        with self._locked(lock):
            for offset, (_, limit) in zip(offsets, limits, strict=True):
                if sum(self._counts(offset)) >= limit:  # type: ignore[arg-type]
                    return False
            for offset in offsets:
                self._add(offset, 1)  # type: ignore[arg-type]
        return True

    def set_count(self, key: int, count: int) -> None:
        """This process's count in a row (its waiting requests of a bucket)."""
        offset = self._row(key)
        if offset is not None:
            struct.pack_into("<H", self._map, offset + KEY.size + 2 * self.column, min(0xFFFF, count))

    def total(self, key: int) -> int:
        """The row's count over every process (0 when the table is full)."""
        offset = self._row(key)
        return 0 if offset is None else sum(self._counts(offset))

    def ring_holders(self, key: int) -> None:
        """Ring the doorbell of every other process with a count in the row."""
        offset = self._row(key) if self.doorbells is not None else None
        if offset is not None:
            self._ring_others(self._counts(offset))

    def _ring_others(self, counts: tuple[int, ...]) -> None:
        for column, count in enumerate(counts):
            if count and column != self.column:
                self.doorbells.ring(column)  # type: ignore[union-attr]

    # -- the supervisor ----------------------------------------------------------------

    def clear_column(self, column: int) -> None:
        """A process is gone: nothing it held or queued counts any more."""
        at = KEY.size + 2 * column
        for row in range(ROWS):
            offset = row * ROW
            if KEY.unpack_from(self._map, offset)[0] != 0:
                struct.pack_into("<H", self._map, offset + at, 0)


class _RowLock:
    """fcntl byte-range lock on one row, for `with`."""

    __slots__ = ("fd", "offset")

    def __init__(self, fd: int, offset: int):
        self.fd, self.offset = fd, offset

    def __enter__(self):
        fcntl.lockf(self.fd, fcntl.LOCK_EX, ROW, self.offset)

    def __exit__(self, *exc_info):
        fcntl.lockf(self.fd, fcntl.LOCK_UN, ROW, self.offset)
