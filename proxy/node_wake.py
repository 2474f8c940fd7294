"""Doorbells between the workers of a node: a slot freed in one process wakes the others.

Under `--workers`, requests waiting for a capacity-limited backend wait in their own worker's
queue; a slot another worker frees used to be seen only when the waiting worker next polled
the node's table (proxy.director.NODE_POLL, 5 ms). With php-fpm answering in a fraction of
a millisecond, the slot sat idle for most of that time, and two workers served fewer
requests than one. Now the worker that frees a slot it cannot use itself rings the
doorbell of every worker that has requests waiting for the director, and they look at once;
the poll stays as the fallback for a lost ring.

A doorbell is a datagram socket in Linux's abstract namespace (no file to clean up, no path
length limit), named after the node's slot table and the worker's column. A ring is one
non-blocking `sendto` of one byte; a full or missing doorbell drops it.
"""
from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

RECEIVE_SIZE = 256  # rings drained per read: their number does not matter, only that one came


class Doorbells:
    def __init__(self, table: Path, column: int):
        digest = hashlib.sha256(str(Path(table).resolve()).encode()).hexdigest()[:20]
        self._prefix = f"\0director-wake-{digest}-"
        self.column = column
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._socket.bind(self._name(column))
        self._loop: asyncio.AbstractEventLoop | None = None

    def _name(self, column: int) -> str:
        return f"{self._prefix}{column}"

    def listen(self, on_ring: Callable[[], None]) -> None:
        """Call `on_ring()` on the running loop whenever another worker rings this one."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._socket.fileno(), self._drain, on_ring)

    def _drain(self, on_ring: Callable[[], None]) -> None:
        try:
            while self._socket.recv(RECEIVE_SIZE):
                pass
        except OSError:  # BlockingIOError: drained
            pass
        on_ring()

    def ring(self, column: int) -> None:
        try:
            self._socket.sendto(b"\0", self._name(column))
        except OSError:  # its queue is full (it will look anyway) or the worker is gone
            pass

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._socket.fileno())
        self._socket.close()
