"""WebSocket pass-through (SPEC §12): the handshake through a director or a road warrior.

A request with `Upgrade: websocket` goes to the chosen backend like any request (scheduler,
capacity, queue, retries, client-side routing), but on a connection of its own with its
Upgrade, Connection and Sec-WebSocket-* headers intact. A 101 is passed back and both
connections become a proxy.websocket_tunnel.Tunnel, which holds the backend's slot until it
ends; any other answer is relayed as a normal response. A malformed handshake, a FastCGI
route and a client connection that cannot be handed over (HTTP/2) get 400.
"""
from __future__ import annotations

import asyncio
import logging

from proxy.errors import UpstreamError
from proxy.headers import HeaderRules
from proxy.relay import first_chunk, relay
from proxy.responses import respond
from proxy.upstream import Timeouts, Upstream, UpstreamRequest
from proxy.upstream.http import HTTPUpstream, UpgradeResponse
from proxy.websocket_tunnel import Tunnel, WebSocketLimits

log = logging.getLogger("director.proxy")

STATUS_LINE = b"HTTP/1.1 101 Switching Protocols\r\n"


class NotUpgradable(Exception):
    """The chosen backend speaks FastCGI: no WebSocket there (400)."""


class WebSocketPass:
    """One upgrade request: `take_over` is the server's scope extension that hands the
    client connection to the tunnel once the backend said 101."""

    def __init__(self, dispatcher, rules: HeaderRules, limits: WebSocketLimits, take_over, upgrade: bytes):
        self.dispatcher = dispatcher
        self.rules = rules
        self.limits = limits
        self.take_over = take_over
        self.upgrade = upgrade

    def prepare(self, request: UpstreamRequest) -> None:
        """Put back the two hop-by-hop fields the handshake needs (the header rules drop them)."""
        request.headers += [(b"upgrade", self.upgrade), (b"connection", b"upgrade")]

    async def through_director(self, director, request: UpstreamRequest, send, pinned, record=None,
                               sticky=None) -> None:
        """`record`: the request's proxy.request_record.RequestRecord (backends tried, attempts);
        `sticky`: its proxy.sticky.StickySession (the handshake goes to the cookie's backend;
        a 101 sets no cookie, an ordinary answer does)."""
        backends = director.backends.values()
        if backends and all(b.address.protocol == "fastcgi" for b in backends):
            await _refuse(send, f"director {director.name} has FastCGI backends only")
            return
        prefer = sticky.preferred(director) if sticky is not None else None
        try:
            sent = await self.dispatcher.send_with_retries(director, request, send, pinned, self._attempt, record,
                                                           prefer=prefer)
        except NotUpgradable as exc:
            await _refuse(send, str(exc))
            return
        if sent is None:
            return
        slot, response, first = sent
        if response.status != 101:
            if sticky is not None:
                send = sticky.sender(slot.backend, send)
            await self.dispatcher.relay_response(director, slot, response, first, request, send)
            return
        backend = slot.backend
        backend.failure_streak = 0
        director.status_counts[1] += 1
        backend.status_counts[1] += 1
        try:
            await self._tunnel(response, f"director {director.name} backend {backend.name}")
        finally:
            slot.release()

    async def direct(self, upstream: Upstream, request: UpstreamRequest, send, timeouts: Timeouts) -> None:
        """A road warrior: straight to the address, no retries."""
        try:
            response, first = await _open(upstream, request, timeouts)
        except NotUpgradable as exc:
            await _refuse(send, str(exc))
            return
        except UpstreamError as err:
            log.info("road warrior %s: websocket: %s", upstream.address.url, err.reason)
            await respond(send, err.status)
            return
        if response.status == 101:
            await self._tunnel(response, upstream.address.url)
            return
        try:
            await relay(response, send, self.rules, False, first=first)
        finally:
            response.release()

    async def _attempt(self, director, slot, request: UpstreamRequest):
        return await _open(slot.backend.upstream, request, director.settings.timeouts)

    async def _tunnel(self, response: UpgradeResponse, what: str) -> None:
        """Pass the 101 back and relay bytes until both sides are closed; cancelled (server
        shutdown), close both sides with 1001 at once."""
        tunnel = Tunnel(self.limits, what)
        backend_transport, from_backend, backend_gone = response.detach(tunnel.backend)
        try:
            from_client = self.take_over(self._head(response.headers), tunnel.client)
        except ConnectionError:
            backend_transport.close()
            return
        tunnel.start(backend_transport, from_backend, from_client)
        if backend_gone:  # it said all it had to say with its 101
            tunnel.backend_lost()
        try:
            await tunnel.done
        except asyncio.CancelledError:
            tunnel.close()
            raise

    def _head(self, headers) -> bytes:
        upgrade = next((value for name, value in headers if name == b"upgrade"), b"websocket")
        fields = [*self.rules.response(headers), (b"upgrade", upgrade), (b"connection", b"Upgrade")]
        return STATUS_LINE + b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"


async def _open(upstream: Upstream, request: UpstreamRequest, timeouts: Timeouts) -> tuple[UpgradeResponse, bytes]:
    """The backend's answer to the handshake, with the first body chunk of a non-101 answer."""
    if not isinstance(upstream, HTTPUpstream):
        raise NotUpgradable(f"backend {upstream.address.url} is FastCGI: no WebSocket there")
    response = await upstream.open_upgrade(request, timeouts)
    if response.status == 101:
        return response, b""
    try:
        return response, await first_chunk(response, request)
    except BaseException:
        response.release()
        raise


async def _refuse(send, reason: str) -> None:
    log.info("websocket refused: %s", reason)
    await respond(send, 400)
