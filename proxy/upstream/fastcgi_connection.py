"""One FastCGI transport: parses records as they arrive, with flow control both ways.

Records queue up until the exchange pulls them; above HIGH_WATER unread content bytes the
transport stops reading (the backend then blocks on its writes), below LOW_WATER it resumes.
Writes wait for the transport's buffer to drain, bounded by the write timeout.
"""
from __future__ import annotations

import asyncio
from collections import deque

from proxy.errors import ConnectionClosed, ProtocolError, ReadTimeout, WriteTimeout
from proxy.upstream.fastcgi_records import Record, RecordFormatError, RecordParser

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class FastCGIConnection(asyncio.Protocol):
    """Pooled connection object (`reusable`, `is_closing()`, `close()`) and asyncio protocol."""

    def __init__(self, label: str):
        self.label = label
        self.reusable = True
        self.transport: asyncio.Transport | None = None
        self._parser = RecordParser()
        self._records: deque[Record] = deque()
        self._unread = 0
        self._reading_paused = False
        self._eof = False
        self._error: Exception | None = None
        self._read_waiter: asyncio.Future | None = None
        self._write_waiter: asyncio.Future | None = None
        self._writing_paused = False
        self._idle_timer: asyncio.TimerHandle | None = None

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
        for record in records:
            self._records.append(record)
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
        if self.transport is not None:
            if self.transport.get_write_buffer_size() or self._error is not None:
                self.transport.abort()
            else:
                self.transport.close()

    def idle(self, timeout: float) -> None:
        """Back in the pool: close after `timeout` s unless reused. php-fpm gives every open
        connection a worker of its own, so an idle one must not hold a worker for long."""
        self.busy()
        try:
            self._idle_timer = asyncio.get_running_loop().call_later(timeout, self.close)
        except RuntimeError:  # released outside the event loop: nothing could reuse it
            self.close()

    def busy(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    # -- used by the exchange --------------------------------------------------------------
    @property
    def has_unread_bytes(self) -> bool:
        """Anything left over from a previous exchange makes the connection unusable."""
        return bool(self._records) or self._parser.pending > 0

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

    async def next_record(self, timeout: float) -> Record | None:
        """The next record, or None at end of stream. Raises the stored error, ReadTimeout."""
        while not self._records:
            if self._error is not None:
                raise self._error
            if self._eof:
                return None
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._read_waiter
            except TimeoutError:
                raise ReadTimeout(f"no data from {self.label} for {timeout:g}s") from None
            finally:
                self._read_waiter = None
        record = self._records.popleft()
        self._unread -= len(record.content)
        if self._reading_paused and self._unread < LOW_WATER and not self.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()
        return record

    def write_nowait(self, chunks: list[bytes]) -> None:
        """Queue `chunks` for sending; the transport flushes them as the backend reads."""
        if self._error is not None:
            raise self._error
        if self.is_closing():
            raise ConnectionClosed(f"connection to {self.label} closed while sending the request")
        self.transport.writelines(chunks)

    async def write(self, chunks: list[bytes], timeout: float) -> None:
        """Queue `chunks` and wait until the transport's buffer is below its high mark."""
        self.write_nowait(chunks)
        while self._writing_paused:
            if self._error is not None:
                raise self._error
            if self.is_closing():
                raise ConnectionClosed(f"connection to {self.label} closed while sending the request")
            self._write_waiter = asyncio.get_running_loop().create_future()
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
