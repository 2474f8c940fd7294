"""Coalesced, eager writes for the connections of our listeners.

Twisted buffers every write and sends it on a later reactor turn after registering the
socket for writability: two epoll_ctl calls and a loop turn per response, and a response's
head, body and last chunk often leave in separate send() calls. Here the writes of one
loop step are gathered and sent with one send() at the end of the step (call_soon), as
asyncio's transports would; only what the kernel does not take goes to Twisted's buffer,
so back-pressure, ordering and error handling stay Twisted's (a step that writes FLUSH_AT
bytes or more flushes on the spot, so a writer that never yields still meets them). Once
Twisted holds bytes, every write queues behind them until its buffer is empty again.
"""
from __future__ import annotations

import asyncio

from twisted.internet import tcp, unix

from proxy.twisted_compat import pending_write_bytes, replace_accepted_transport

FLUSH_AT = 64 * 1024  # gathered bytes that are sent at once rather than at the end of the step


class CoalescingWriteMixin:
    """`write`/`writeSequence` gathered per loop step and sent directly when possible."""

    _gathered: list[bytes] | None = None  # writes waiting for this step's flush
    _gathered_size = 0
    _twisted_sending = False  # Twisted's buffer may hold bytes: new writes go behind them
    _aborted = False  # abortConnection() ran: later writes (a TLS layer's, say) are dropped
    _loop: asyncio.AbstractEventLoop | None = None  # looked up once per connection: every
    # asyncio.get_running_loop() call makes a getpid() system call

    def write(self, data: bytes) -> None:
        if not data or not self.connected or self._aborted:
            return
        gathered = self._gathered
        if gathered is None:
            if self._twisted_sending:
                super().write(data)  # keep the order behind what Twisted is sending
                return
            self._gathered, self._gathered_size = [data], len(data)
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
        else:
            gathered.append(data)
            self._gathered_size += len(data)
        if self._gathered_size >= FLUSH_AT:  # a writer that never yields still hits the socket
            self._flush()

    def writeSequence(self, iovec) -> None:
        self.write(b"".join(iovec))  # one call: Twisted writes a response head as ~30 pieces

    def _flush(self) -> None:
        gathered, self._gathered = self._gathered, None
        if not gathered or not self.connected or self._aborted:
            return
        data = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        try:
            sent = self.socket.send(data)
        except OSError:
            sent = 0  # BlockingIOError, or an error Twisted's own write path meets again and closes
        if sent < len(data):
            self._twisted_sending = True
            super().write(data[sent:])

    def doWrite(self):
        """Twisted's send when the socket is writable; writes go direct again once it has
        sent all it held."""
        result = super().doWrite()
        if not pending_write_bytes(self):
            self._twisted_sending = False
        return result

    def loseConnection(self, *args, **kwargs):
        self._flush()  # Twisted closes at once when its own buffer is empty
        return super().loseConnection(*args, **kwargs)

    def loseWriteConnection(self):
        self._flush()
        return super().loseWriteConnection()

    def abortConnection(self):
        self._gathered = None
        self._aborted = True  # Twisted closes on its next turn; a write before would re-arm the socket
        return super().abortConnection()


class CoalescingTCPServer(CoalescingWriteMixin, tcp.Server):
    pass


class CoalescingUNIXServer(CoalescingWriteMixin, unix.Server):
    pass


def use_coalesced_writes(port) -> None:
    """Make the listening `port` wrap the sockets it accepts in the transports above."""
    replace_accepted_transport(port, CoalescingTCPServer, CoalescingUNIXServer)
