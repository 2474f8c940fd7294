"""One FastCGI transport: parses records as they arrive, with flow control both ways.

Records queue up until the exchange pulls them; above HIGH_WATER unread content bytes the
transport stops reading (the backend then blocks on its writes), below LOW_WATER it resumes.
Writes wait for the transport's buffer to drain, bounded by the write timeout.

Timing costs one timer handle per connection, not one per wait: the read (idle) timeout
and the pool idle timeout are deadlines re-checked when the timer fires, which then re-arms
itself at the current deadline. A state change only re-arms it when its deadline is earlier.
"""
from __future__ import annotations

import asyncio
from collections import deque

from proxy.errors import ConnectionClosed, ProtocolError, ReadTimeout, WriteTimeout
from proxy.upstream.fastcgi_records import END_REQUEST, Record, RecordFormatError, RecordParser

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class FastCGIConnection(asyncio.Protocol):
    """Pooled connection object (`reusable`, `is_closing()`, `close()`) and asyncio protocol."""

    def __init__(self, label: str, loop: asyncio.AbstractEventLoop):
        self.label = label
        self.reusable = True
        self.transport: asyncio.Transport | None = None
        self._loop = loop
        self._parser = RecordParser()
        self._records: deque[Record] = deque()
        self._unread = 0
        self._reading_paused = False
        self._eof = False
        self._error: Exception | None = None
        self._read_waiter: asyncio.Future | None = None
        self._read_timeout = 0.0  # of the current read wait
        self._read_since = 0.0  # start of the current read wait
        self._write_waiter: asyncio.Future | None = None
        self._writing_paused = False
        self._idle_timeout: float | None = None  # set while idle in the pool
        self._idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self._error is not None:
            return
        try:
            records = self._parser.feed(data)
        except RecordFormatError as exc:
            self.fail(ProtocolError(f"invalid FastCGI stream from {self.label}: {exc}"))
            return
        if records:
            self._records.extend(records)
            for record in records:
                self._unread += len(record.content)
            if self._unread > HIGH_WATER and not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()
        _wake(self._read_waiter)

    def eof_received(self):
        self._eof = True
        self.reusable = False
        _wake(self._read_waiter)
        return False

    def connection_lost(self, exc):
        self.busy()
        self._stop_timer()
        self._eof = True
        self.reusable = False
        if exc is not None and self._error is None:
            self._error = ConnectionClosed(f"connection to {self.label} lost: {exc}")
        _wake(self._read_waiter)
        _wake(self._write_waiter)

    def pause_writing(self):
        self._writing_paused = True

    def resume_writing(self):
        self._writing_paused = False
        _wake(self._write_waiter)

    # -- pool interface --------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing() or self._eof

    def close(self) -> None:
        """Graceful close when idle; abort (dropping queued request bytes) mid-exchange."""
        self.reusable = False
        self._stop_timer()
        if self.transport is not None:
            if self.transport.get_write_buffer_size() or self._error is not None:
                self.transport.abort()
            else:
                self.transport.close()

    def idle(self, timeout: float) -> None:
        """Back in the pool: close after `timeout` s unless reused. php-fpm gives every open
        connection a worker of its own, so an idle one must not hold a worker for long."""
        if not self._loop.is_running():  # released outside the event loop: nothing could reuse it
            self.close()
            return
        self._idle_timeout = timeout
        self._idle_since = now = self._loop.time()
        self._arm(now + timeout)

    def busy(self) -> None:
        self._idle_timeout = None  # the timer, if armed, finds nothing due and re-checks later

    # -- the connection timer ----------------------------------------------------------------
    def _arm(self, deadline: float) -> None:
        """Make sure the timer fires no later than `deadline`."""
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.is_closing():
            return
        now = self._loop.time()
        if self._idle_timeout is not None:
            deadline = self._idle_since + self._idle_timeout
            if now >= deadline:
                self.close()
                return
        elif self._read_waiter is not None and not self._read_waiter.done():
            deadline = self._read_since + self._read_timeout
            if now >= deadline:  # raised by wait_readable; the exchange then drops us
                self._read_waiter.set_exception(ReadTimeout(f"no data from {self.label} for {self._read_timeout:g}s"))
                return
        else:
            return  # busy but not waiting for the backend: the next wait re-arms
        self._arm(deadline)

    # -- used by the exchange --------------------------------------------------------------
    @property
    def has_unread_bytes(self) -> bool:
        """Anything left over from a previous exchange makes the connection unusable."""
        return bool(self._records) or self._parser.pending > 0

    @property
    def end_queued(self) -> bool:
        """An END_REQUEST record is queued: the exchange can finish without waiting. It is
        the last record of a response, so only the newest is looked at (were a backend to
        send more after it, the exchange reads on and finds it: only slower)."""
        records = self._records
        return bool(records) and records[-1].type == END_REQUEST

    @property
    def truncated(self) -> bool:
        return self._parser.pending > 0

    def fail(self, error: Exception) -> None:
        """Stop the exchange with `error` (raised by the next read) and drop the transport."""
        if self._error is None:
            self._error = error
        self.close()
        _wake(self._read_waiter)
        _wake(self._write_waiter)

    def pop_record(self) -> Record | None:
        """The next queued record, or None when none is queued (see `wait_readable`)."""
        if not self._records:
            return None
        record = self._records.popleft()
        self._unread -= len(record.content)
        if self._reading_paused and self._unread < LOW_WATER and not self.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()
        return record

    async def wait_readable(self, timeout: float) -> bool:
        """Wait until a record is queued: True, or False at end of stream. Raises the stored
        error, or ReadTimeout when no data arrives for `timeout` seconds."""
        while not self._records:
            if self._error is not None:
                raise self._error
            if self._eof:
                return False
            self._read_waiter = waiter = self._loop.create_future()
            self._read_timeout = timeout
            self._read_since = now = self._loop.time()
            self._arm(now + timeout)
            try:
                await waiter
            finally:
                self._read_waiter = None
        return True

    def write_nowait(self, chunks: list[bytes]) -> None:
        """Queue `chunks` for sending; the transport flushes them as the backend reads."""
        if self._error is not None:
            raise self._error
        if self.is_closing():
            raise ConnectionClosed(f"connection to {self.label} closed while sending the request")
        # One write() of the joined chunks, not writelines(): CPython 3.12.0-3.12.7 and
        # 3.13.0-3.13.1 skip flow control in writelines (gh-127655), so pause_writing would
        # never come and a backend that stops reading would fill our memory.
        self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    async def write(self, chunks: list[bytes], timeout: float) -> None:
        """Queue `chunks` and wait until the transport's buffer is below its high mark."""
        self.write_nowait(chunks)
        while self._writing_paused:
            if self._error is not None:
                raise self._error
            if self.is_closing():
                raise ConnectionClosed(f"connection to {self.label} closed while sending the request")
            self._write_waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._write_waiter
            except TimeoutError:
                raise WriteTimeout(f"{self.label} accepted no request data for {timeout:g}s") from None
            finally:
                self._write_waiter = None


def _wake(waiter: asyncio.Future | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
