"""daphne start-up for Director: traffic and management listeners in one process.

`build_server(...)` returns a `DirectorServer` (a daphne `Server`); `run()` binds every
listener first and raises `ListenError` naming the first one that cannot be bound, so
nothing starts half-configured; `ready_callback(server)` then runs on the reactor's
asyncio loop (start background tasks there: daphne has no ASGI lifespan).

The protocol hardening (limits, timeouts, back-pressure, mid-response failures) lives in
`proxy.server_channel` and `proxy.server_protocol`. Import this module before anything
imports `twisted.internet.reactor`: it installs `proxy.reactor` (uvloop) at import, then
checks that daphne and Twisted still have the internals Director relies on
(`proxy.twisted_compat`; AdapterMismatch names what is missing).

UNIX socket listeners: a stale socket file left by a dead process is removed at start
(only a socket nobody accepts on; any other file, or a live socket, is a ListenError).
The socket is made mode 0o666, like a loopback TCP port that every local user may reach:
restrict access with the permissions of its directory. It is removed on stop.
"""
from __future__ import annotations

from proxy.reactor import SoonClock, install as _install_reactor  # isort:skip

_install_reactor()  # isort:skip  # before daphne.server, which would install a stock one
import daphne.server  # noqa: F401  # isort:skip
from proxy import twisted_compat  # isort:skip

twisted_compat.verify()  # isort:skip  # every daphne/Twisted internal used, or AdapterMismatch

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from typing import Callable

from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory
from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.logger import STDLibLogObserver, globalLogBeginner

from proxy.addresses import ListenAddress
from proxy.listeners import BACKLOG, UNIX_SOCKET_MODE, ListenError, describe_error, remove_stale_socket
from proxy.server_channel import SEND_TIMEOUT, ListenerFactory
from proxy.server_h2 import DirectorH2Connection
from proxy.server_protocol import ManagementRequest, TrafficRequest
from proxy.server_transport import use_coalesced_writes
from proxy.tls import CertificateSet, ServerTLS, tls_factory
from proxy.twisted_compat import application_task, application_tasks, event_loop_of, mark_adopted_unix_port

logger = logging.getLogger("director.server")

MAX_SWEEP_INTERVAL = 1.0  # timeouts fire at most min(this, timeout / 4) late
SHUTDOWN_TIMEOUT = 30.0  # default [proxy] shutdown_timeout
DRAIN_POLL = 0.05

__all__ = ["DirectorServer", "ListenError", "build_server"]


class DirectorServer(Server):
    """daphne's Server with one factory per plane and Director's connection rules.

    `connections` (daphne's per-protocol table) only holds management requests and
    websockets: traffic requests keep their task in `traffic_tasks` instead, which spares
    the hot path daphne's bookkeeping and its once-a-second polling of every request.
    """

    def __init__(self, *, traffic_app, management_app, traffic_listen, management_listen,
                 max_request_body: int, header_timeout: float, ready_callback=None,
                 server_name: str = "director", verbosity: int = 1, send_timeout: float = SEND_TIMEOUT,
                 sockets=None, shutdown_timeout: float = SHUTDOWN_TIMEOUT,
                 tls_certificates: CertificateSet | None = None, clock: Callable[[], float] = time.monotonic):
        """`clock`: monotonic seconds for connection deadlines and the shutdown timeout."""
        self.clock = clock
        self.shutdown_timeout = shutdown_timeout
        self.server_tls = ServerTLS(tls_certificates) if tls_certificates is not None else None
        self.tls_traffic_factory = None
        self.draining = False
        self.traffic_app = traffic_app
        self.sockets = dict(sockets or {})
        self.traffic_listen = list(traffic_listen)
        self.management_listen = list(management_listen)
        if not self.traffic_listen and not self.management_listen:
            raise ValueError("no listeners configured")
        if max_request_body < 0 or header_timeout <= 0 or send_timeout <= 0:
            raise ValueError("max_request_body must be >= 0, header_timeout and send_timeout > 0")
        self.max_request_body = max_request_body
        self.header_timeout = header_timeout
        self.send_timeout = send_timeout
        self.ready_callback = ready_callback
        super().__init__(
            application=management_app,
            endpoints=[str(a) for a in self.traffic_listen + self.management_listen],
            server_name=server_name,
            verbosity=verbosity,
        )
        self.ports = []  # (kind, address, Twisted port) for every bound listener
        self.channels = set()  # open DirectorChannels, swept for header timeouts
        self.traffic_tasks = set()
        self._start_error = None
        self.loop = event_loop_of(reactor)
        self.soon_clock = SoonClock(reactor, self.loop)  # TLS and HTTP/2 zero-delay calls
        self._sweep_interval = min(MAX_SWEEP_INTERVAL, header_timeout / 4, send_timeout / 4)

    @property
    def server_name(self) -> str:
        return self._server_name

    @server_name.setter
    def server_name(self, name: str) -> None:
        """Set by daphne's constructor and by reload(); `server_field` is the name as the
        bytes every response's Server field carries (empty: none is added)."""
        self._server_name = name
        self.server_field = name.encode() if name else b""

    # -- start and stop ----------------------------------------------------------------

    def run(self):
        """Bind every listener, then run the reactor until stop(). Raises ListenError."""
        self.connections = {}
        self.http_factory = self._factory(ManagementRequest)
        self.traffic_factory = self._factory(TrafficRequest, app=self.traffic_app)
        self.traffic_factory.h2_protocol = DirectorH2Connection
        if self.server_tls is not None:
            self.tls_traffic_factory = tls_factory(self.server_tls, self.traffic_factory, self.soon_clock)
        self.ws_factory = WebSocketFactory(self, server=self.server_name)
        self.ws_factory.setProtocolOptions(
            autoPingTimeout=self.ping_timeout,
            allowNullOrigin=True,
            openHandshakeTimeout=self.websocket_handshake_timeout,
            maxMessagePayloadSize=self.websocket_max_message_size,
            maxFramePayloadSize=self.websocket_max_frame_size,
        )
        observers = [STDLibLogObserver("twisted")] if self.verbosity > 1 else [lambda _: None]
        globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False, discardBuffer=True)

        if self.signal_handlers:
            # From the first bound port until reactor.run() installs Twisted's handlers, a
            # SIGTERM/SIGINT would kill the process outright: queue the same graceful stop.
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, self._stop_when_running)
        self._listen_all()
        if self.abort_start:  # stop() came before run()
            self._stop_listening()
            return
        asyncio.set_event_loop(self.loop)
        if self.verbosity >= 3:
            self.loop.set_debug(True)
        reactor.callLater(1, self.application_checker)
        reactor.callLater(2, self.timeout_checker)
        reactor.callLater(self._sweep_interval, self._sweep)
        reactor.addSystemEventTrigger("before", "shutdown", self._graceful_stop)
        self.loop.call_soon(self._ready)  # first thing run_forever runs: the loop is running
        reactor.run(installSignalHandlers=self.signal_handlers)
        if self._start_error is not None:
            raise self._start_error

    def _stop_when_running(self, signum, frame):
        """A stop signal before the reactor runs: it stops (gracefully) as soon as it does."""
        reactor.callWhenRunning(reactor.stop)

    def stop(self):
        """Stop the reactor (safe from any thread); run() then returns."""
        if reactor.running:
            reactor.callFromThread(reactor.stop)
        else:
            self.abort_start = True

    def _factory(self, request_class, app=None):
        return ListenerFactory(self, request_class, app=app, max_request_body=self.max_request_body,
                               header_timeout=self.header_timeout, send_timeout=self.send_timeout, clock=self.clock)

    def _listen_all(self):
        """Bind traffic then management listeners; on any failure close those already bound
        (and remove the UNIX socket files made: Twisted unlinks them only on a running
        reactor). Listeners are logged once all are bound, so a failed start says one line."""
        bound = []
        try:
            for kind, addresses, factory in (("traffic", self.traffic_listen, self.traffic_factory),
                                             ("management", self.management_listen, self.http_factory)):
                for address in addresses:
                    self.ports.append((kind, address, self._listen(address, factory)))
                    bound.append(address)
        except ListenError:
            self._stop_listening()
            for address in bound:
                if address.path is not None and address not in self.sockets:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(address.path)
            raise
        for address in bound:
            logger.info("%s %s", "serving inherited listener" if address in self.sockets else "listening on", address)

    def _listen(self, address: ListenAddress, factory):
        if address.tls:
            if self.tls_traffic_factory is None or factory is not self.traffic_factory:
                raise ListenError(f"cannot listen on {address}: TLS needs [proxy] tls_certificates")
            factory = self.tls_traffic_factory
        port = self._open_port(address, factory)
        use_coalesced_writes(port)
        return port

    def _open_port(self, address: ListenAddress, factory):
        inherited = self.sockets.get(address)
        if inherited is not None:
            return self._adopt(address, inherited, factory)
        try:
            if address.path is not None:
                remove_stale_socket(address)
                port = reactor.listenUNIX(address.path, factory, backlog=BACKLOG, mode=UNIX_SOCKET_MODE)
            else:
                port = reactor.listenTCP(address.port, factory, backlog=BACKLOG, interface=address.host)
        except CannotListenError as exc:
            raise ListenError(f"cannot listen on {address}: {describe_error(exc.socketError)}") from None
        host = port.getHost()
        self.listening_addresses.append((getattr(host, "host", address.path), getattr(host, "port", None)))
        return port

    def _adopt(self, address: ListenAddress, sock: socket.socket, factory):
        """Serve a listening socket made by a parent process (`--workers`, see
        proxy.listeners); stopping one worker must not affect the others."""
        sock.setblocking(False)
        port = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
        if sock.family == socket.AF_UNIX:  # Twisted 26 treats adopted UNIX ports like its own
            mark_adopted_unix_port(port)
        return port

    def _stop_listening(self):
        """Close the listening sockets (Twisted unlinks UNIX socket files as it does)."""
        ports, self.ports = self.ports, []
        for _kind, _address, port in ports:
            port.stopListening()

    def reconfigure(self, *, traffic_listen: list[ListenAddress], management_listen: list[ListenAddress],
                    max_request_body: int, header_timeout: float, server_name: str, shutdown_timeout: float,
                    tls_certificates: CertificateSet | None = None):
        """Apply reloaded `[proxy]` settings without closing a listener that stays.

        New listeners are bound first: if one fails, ListenError and nothing has changed.
        Listeners no longer wanted stop accepting; their open connections finish.
        New TLS connections get `tls_certificates`; open ones keep theirs.
        """
        previous_tls = self.server_tls.certificates if self.server_tls is not None else None
        if tls_certificates is not None:
            self._use_certificates(tls_certificates)
        wanted = [("traffic", a, self.traffic_factory) for a in traffic_listen]
        wanted += [("management", a, self.http_factory) for a in management_listen]
        current = {(kind, address) for kind, address, _ in self.ports}
        added = []
        try:
            for kind, address, factory in wanted:
                if (kind, address) not in current:
                    added.append((kind, address, self._listen(address, factory)))
        except ListenError:
            for _kind, _address, port in added:
                port.stopListening()
            if previous_tls is not None:
                self._use_certificates(previous_tls)
            raise
        keep = {(kind, address) for kind, address, _ in wanted}
        for _kind, address, port in [p for p in self.ports if (p[0], p[1]) not in keep]:
            port.stopListening()
            logger.info("stopped listening on %s", address)
        self.ports = [p for p in self.ports if (p[0], p[1]) in keep] + added
        for _kind, address, _port in added:
            logger.info("listening on %s", address)
        self.traffic_listen, self.management_listen = list(traffic_listen), list(management_listen)
        for factory in (self.traffic_factory, self.http_factory):
            factory.max_request_body, factory.header_timeout = max_request_body, header_timeout
        self.max_request_body, self.header_timeout = max_request_body, header_timeout
        self._sweep_interval = min(MAX_SWEEP_INTERVAL, header_timeout / 4, self.send_timeout / 4)
        self.server_name = server_name
        self.shutdown_timeout = shutdown_timeout

    def _use_certificates(self, certificates: CertificateSet) -> None:
        if self.server_tls is None:
            self.server_tls = ServerTLS(certificates)
            self.tls_traffic_factory = tls_factory(self.server_tls, self.traffic_factory, self.soon_clock)
        else:
            self.server_tls.replace(certificates)

    def _ready(self):
        """Run ready_callback on the loop; if it fails, stop and let run() raise its error."""
        if self.ready_callback is not None:
            try:
                self.ready_callback(self)
            except Exception as exc:
                logger.exception("ready callback failed; stopping")
                self._start_error = exc
                reactor.stop()

    def bound(self, kind: str) -> list:
        """Addresses actually bound for `kind` ("traffic"/"management"): (host, port) or path."""
        result = []
        for port_kind, _address, port in self.ports:
            if port_kind == kind:
                host = port.getHost()
                result.append((host.host, host.port) if hasattr(host, "port") else os.fsdecode(host.name))
        return result

    # -- connection bookkeeping --------------------------------------------------------

    def channel_opened(self, channel):
        self.channels.add(channel)

    def channel_closed(self, channel):
        self.channels.discard(channel)

    def _sweep(self):
        """One periodic pass instead of a timer per request: time out overdue channels."""
        now = self.clock()
        try:
            for channel in [c for c in self.channels if c.deadline is not None and c.deadline <= now]:
                try:
                    channel.timed_out()
                except Exception:  # one broken connection must not stop every other timeout
                    logger.exception("timing out a connection failed; aborting it")
                    channel.deadline = None
                    channel.transport.abortConnection()
        finally:
            reactor.callLater(self._sweep_interval, self._sweep)

    def create_application(self, protocol, scope):
        """daphne's, plus a done-callback so a failing management app is answered at once."""
        queue = super().create_application(protocol, scope)
        if hasattr(protocol, "app_done"):
            application_task(self, protocol).add_done_callback(protocol.app_done)
        return queue

    async def handle_reply(self, protocol, message):
        """daphne's, plus back-pressure: wait while the client's write buffer is full."""
        await super().handle_reply(protocol, message)
        channel = getattr(protocol, "channel", None)
        if channel is not None and channel.write_blocked:
            await channel.drain()

    def application_checker(self):
        """daphne's checker, which must survive: it stopped rescheduling after one error."""
        try:
            super().application_checker()
        except Exception:
            logger.exception("application checker failed; rescheduling")
            reactor.callLater(1, self.application_checker)

    def _graceful_stop(self):
        """Shutdown (SIGTERM, SIGINT, stop()): stop accepting, let what is in flight finish
        for up to `shutdown_timeout` seconds, then cancel what is left. A Deferred: Twisted
        waits for it before the reactor stops."""
        self.draining = True
        self._stop_listening()
        for protocol in list(self.connections):
            if hasattr(protocol, "serverClose"):  # management websockets (status page): 1001 going away
                protocol.serverClose(code=1001)
        for channel in list(self.channels):
            channel.close_when_done()
        logger.info("stopped accepting; waiting up to %gs for %d connections", self.shutdown_timeout, len(self.channels))
        waiting = defer.Deferred.fromFuture(self.loop.create_task(self._drained()))
        waiting.addErrback(lambda failure: logger.error("draining failed: %s", failure.getErrorMessage()))
        waiting.addCallback(lambda _: self.kill_all_applications())
        return waiting

    async def _drained(self) -> None:
        deadline = self.clock() + self.shutdown_timeout
        while (self.channels or self.traffic_tasks) and self.clock() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        if self.channels or self.traffic_tasks:
            logger.warning("shutdown_timeout (%gs) passed with %d requests in flight; closing them",
                           self.shutdown_timeout, len(self.traffic_tasks))

    def kill_all_applications(self):
        """Cancel every application task still running, traffic and management, wait for
        them, then close every connection left.

        Replaces daphne's, which fails on a connection entry without an application.
        """
        tasks = list(self.traffic_tasks) + application_tasks(self)
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            logger.info("cancelled %d pending application tasks", len(pending))
        waiting = defer.Deferred.fromFuture(asyncio.gather(*pending, return_exceptions=True))
        waiting.addErrback(lambda _: None)
        waiting.addCallback(lambda _: self._close_channels())
        return waiting

    def _close_channels(self):
        for channel in list(self.channels):
            channel.close()

def build_server(*, traffic_app, management_app, traffic_listen: list[ListenAddress],
                 management_listen: list[ListenAddress], max_request_body: int, header_timeout: float,
                 ready_callback=None, server_name: str = "director", verbosity: int = 1,
                 send_timeout: float = SEND_TIMEOUT, sockets=None,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT,
                 tls_certificates: CertificateSet | None = None,
                 clock: Callable[[], float] = time.monotonic) -> DirectorServer:
    """The server runproxy runs: `server.run()` blocks; `server.stop()` ends it.

    `send_timeout`: a response blocked by a client that reads nothing for this long is
    aborted (nginx's send_timeout; default 60 s).
    `sockets`: {ListenAddress: listening socket} made by a parent process, adopted instead
    of binding those addresses (`--workers`: see proxy.listeners).
    `shutdown_timeout`: how long a stopping server lets in-flight requests finish.
    `tls_certificates`: what `tls://` listeners serve (proxy.tls.load_certificates).
    `clock`: monotonic seconds for connection deadlines (tests move it).
    """
    return DirectorServer(
        traffic_app=traffic_app, management_app=management_app, traffic_listen=traffic_listen,
        management_listen=management_listen, max_request_body=max_request_body,
        header_timeout=header_timeout, ready_callback=ready_callback, server_name=server_name,
        verbosity=verbosity, send_timeout=send_timeout, sockets=sockets, shutdown_timeout=shutdown_timeout,
        tls_certificates=tls_certificates, clock=clock,
    )
