"""The Twisted reactor daphne runs on: Twisted's asyncio reactor over a uvloop event loop.

daphne installs `AsyncioSelectorReactor` on a stock asyncio loop when it is imported,
unless a reactor of that class is installed already; `install()` does that first. Two
changes, both measured on the proxy's hot path (bench/, php-fpm row: about +8% and +5%):

- uvloop runs the loop and every upstream connection (asyncio transports in C);
- a ready socket calls `_readOrWrite` directly. Twisted wraps every read event in
  `callWithLogger`, five Python calls that set the legacy log "system" context, which
  nothing here reads; `_readOrWrite` already catches and logs what `doRead` raises.
"""
from __future__ import annotations

import sys

import uvloop
from twisted.internet import asyncioreactor


class DirectorReactor(asyncioreactor.AsyncioSelectorReactor):
    """Readers registered with the loop without Twisted's per-event log context."""

    def addReader(self, reader):
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        fd = reader.fileno()
        try:
            self._asyncioEventloop.add_reader(fd, self._readOrWrite, reader, True)
        except OSError:  # e.g. a file epoll refuses: Twisted's own path polls it instead
            super().addReader(reader)
            return
        self._readers[reader] = fd


def install() -> None:
    """Install DirectorReactor on a new uvloop loop, unless a reactor is installed already
    (then daphne's check decides; a test process may have set one up)."""
    if "twisted.internet.reactor" in sys.modules:
        return
    from twisted.internet.main import installReactor

    installReactor(DirectorReactor(uvloop.new_event_loop()))
