"""The access log (SPEC §12): one line per traffic request, written off the event loop.

Lines are collected on the event loop and handed to a writer thread through a queue every
FLUSH_INTERVAL seconds (or sooner once FLUSH_BYTES are waiting), joined; the thread writes
them with one `write()` and the loop never waits for the disk. Handing over per loop turn
woke the thread (and made it take the GIL) several thousand times a second: a fifth of a
request's cost in `make bench`. When the disk is slower than the traffic, the backlog (bytes handed
over but not yet written) is bounded by MAX_BACKLOG: further lines are dropped and counted,
and the writer logs how many once it catches up. `reopen()` (SIGUSR1, for logrotate) makes
the writer open the path again after the lines before it; `close()` writes what is left.

`target`: a file path (opened for appending; several workers may share one file, each
`write()` of whole lines is one append) or "-" for standard output.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from typing import Callable

from proxy.access_log_format import FORMATS

log = logging.getLogger("director.proxy")

STDOUT = "-"
MAX_BACKLOG = 16 * 1024 * 1024  # bytes handed to the writer and not yet written
FLUSH_INTERVAL = 0.1  # seconds a line may wait on the loop before it goes to the writer
FLUSH_LINES = 512  # lines that go to the writer at once, without waiting for the interval
DROP_REPORT_INTERVAL = 10.0  # seconds between "lines dropped" warnings
_REOPEN = object()
_REOPEN_IF_MOVED = object()
_STOP = object()


class AccessLog:
    """One log destination and format; `write(record)` is called on the event loop."""

    def __init__(self, target: str, log_format: str):
        self.target = target
        self.target_setting = target  # as the settings say it (a relative path stays relative)
        self.format_name = log_format
        self.format: Callable = FORMATS[log_format]
        self.dropped = 0  # lines not written because the writer fell behind
        self._file = self._open()  # fails here, at start or reload, not later in the thread
        self._lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._handed = 0  # bytes handed to the writer (loop thread only)
        self._written = 0  # bytes written or given up on (writer thread only)
        self._reported_drops = 0
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<AccessLog {self.target} {self.format_name}>"

    def _open(self):
        if self.target == STDOUT:
            return open(1, "wb", buffering=0, closefd=False)
        return open(self.target, "ab", buffering=0)

    # -- on the event loop ------------------------------------------------------------

    def write(self, record) -> None:
        """Queue the line of one finished request (a proxy.request_record.RequestRecord)."""
        if self._handed - self._written > MAX_BACKLOG:
            self.dropped += 1
            return
        lines = self._lines
        if not lines:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self._timer = loop.call_later(FLUSH_INTERVAL, self._hand_over)
        lines.append(self.format(record))
        if len(lines) >= FLUSH_LINES:
            self._hand_over()

    def _hand_over(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if not self._lines:
            return
        chunk = "".join(self._lines).encode("utf-8", "backslashreplace")
        self._lines = []
        self._handed += len(chunk)
        self._queue.put(chunk)

    def reopen(self) -> None:
        """Open the path again (after logrotate renamed it); lines already made go to the old file."""
        if self._lines:
            self._hand_over()
        self._queue.put(_REOPEN)

    def reopen_if_moved(self) -> None:
        """Open the path again if it no longer names the open file: a rotation whose SIGUSR1
        came while this process could not hear it yet (it ignores SIGUSR1 until its loop
        runs, so that the signal cannot kill it while it starts)."""
        if self.target != STDOUT:
            self._queue.put(_REOPEN_IF_MOVED)

    def close(self, wait: float | None = 5.0) -> None:
        """Write what is queued, then stop the writer (waiting up to `wait` seconds for it)."""
        if self._lines:
            self._hand_over()
        self._queue.put(_STOP)
        if wait:
            self._thread.join(wait)

    # -- in the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        last_report = 0.0
        while True:
            item = self._queue.get()
            chunks = []
            while isinstance(item, bytes):
                chunks.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if chunks:
                self._write(b"".join(chunks))
            if self.dropped != self._reported_drops and time.monotonic() - last_report >= DROP_REPORT_INTERVAL:
                last_report = time.monotonic()
                log.warning("access log %s: %d lines dropped so far (writing fell behind the traffic)",
                            self.target, self.dropped)
                self._reported_drops = self.dropped
            if item is _REOPEN or (item is _REOPEN_IF_MOVED and self._moved()):
                self._reopen()
            elif item is _STOP:
                self._file.close()
                return

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._file.write(view) or 0:]
        except OSError as exc:
            log.error("access log %s: cannot write %d bytes: %s", self.target, len(view), exc)
        self._written += len(data)

    def _moved(self) -> bool:
        try:
            on_disk = os.stat(self.target)
        except OSError:
            return True  # renamed away, nothing new there yet: opening creates it
        opened = os.fstat(self._file.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (opened.st_dev, opened.st_ino)

    def _reopen(self) -> None:
        try:
            new = self._open()
        except OSError as exc:
            log.error("access log %s: cannot reopen, still writing to the old file: %s", self.target, exc)
            return
        old, self._file = self._file, new
        old.close()
        log.info("access log %s reopened", self.target)


def open_access_log(setting: str, log_format: str) -> AccessLog | None:
    """The access log of `[proxy] access_log` / `access_log_format`; None when off ("")."""
    if not setting:
        return None
    access_log = AccessLog(setting if setting == STDOUT else os.path.abspath(setting), log_format)
    access_log.target_setting = setting
    return access_log
