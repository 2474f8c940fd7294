"""The Twisted reactor daphne runs on: Twisted's asyncio reactor over a uvloop event loop.

daphne installs `AsyncioSelectorReactor` on a stock asyncio loop when it is imported,
unless a reactor of that class is installed already; `install()` does that first. Two
changes, both measured on the proxy's hot path (bench/, php-fpm row: about +8% and +5%):

- uvloop runs the loop and every upstream connection (asyncio transports in C);
- a ready socket calls the reactor's dispatch directly. Twisted wraps every read event in
  `callWithLogger`, five Python calls that set the legacy log "system" context, which
  nothing here reads; the dispatch already catches and logs what `doRead` raises (the
  internals this takes are named in `proxy.twisted_compat`).
"""
from __future__ import annotations

import asyncio
import sys

import uvloop
from twisted.internet import asyncioreactor

from proxy.twisted_compat import add_reader_unlogged


class DirectorReactor(asyncioreactor.AsyncioSelectorReactor):
    """Readers registered with the loop without Twisted's per-event log context."""

    def addReader(self, reader):
        if not add_reader_unlogged(self, reader):  # e.g. a file epoll refuses: Twisted polls it
            super().addReader(reader)


class SoonClock:
    """The reactor as a clock (`seconds`, `callLater`) for Twisted objects that take one,
    except that a zero delay goes to the event loop's call_soon. Twisted's HTTP/2 sending
    loop reschedules itself that way after every frame, and its TLS transport once per burst
    of writes; a Twisted DelayedCall plus an asyncio timer each time cost more than the work.
    Other delays and the time are the reactor's."""

    def __init__(self, reactor, loop: asyncio.AbstractEventLoop):
        self._reactor, self._loop = reactor, loop

    def seconds(self) -> float:
        return self._reactor.seconds()

    def callLater(self, delay, function, *args):  # noqa: N802 - Twisted's interface
        if delay == 0:
            return self._loop.call_soon(function, *args)  # a Handle: cancel() as a DelayedCall
        return self._reactor.callLater(delay, function, *args)


def install() -> None:
    """Install DirectorReactor on a new uvloop loop, unless a reactor is installed already
    (then daphne's check decides; a test process may have set one up)."""
    if "twisted.internet.reactor" in sys.modules:
        return
    from twisted.internet.main import installReactor

    installReactor(DirectorReactor(uvloop.new_event_loop()))
