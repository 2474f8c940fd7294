"""The traffic ASGI application: route, then pass to a director or straight to an address.

Raw ASGI, no Django on this path. proxy.server_protocol puts the spooled request body in
`scope["extensions"]["director"]` so retries replay it without copying, the function that
hands the connection over after a WebSocket handshake (proxy.websocket), and the request's
`RequestRecord` (proxy.request_record), which this module and proxy.dispatch fill in and
`request_done` turns into metrics and an access log line once the server has finished it.
"""
from __future__ import annotations

import logging
from time import monotonic

from proxy.cache_flow import CacheFlow
from proxy.dispatch import Dispatcher, HealthSink
from proxy.errors import UpstreamError
from proxy.headers import HeaderRules, cookie_value
from proxy.relay import open_response, relay
from proxy.request_metrics import record_request
from proxy.request_record import RequestRecord
from proxy.responses import respond, with_header
from proxy.routes import Route, find_route
from proxy.runtime import DirectorSettings
from proxy.state import DataPlane
from proxy.upstream import RequestBody, UpstreamRequest
from proxy.upstream.cgi import BadRequestPath
from proxy.websocket import WebSocketPass
from proxy.websocket_frames import handshake_problem, upgrade_value
from proxy.websocket_tunnel import WebSocketLimits

log = logging.getLogger("director.proxy")
ROAD_WARRIOR = DirectorSettings()


class ProxyApp:
    """ASGI callable for the traffic listeners."""

    def __init__(self, plane: DataPlane, rules: HeaderRules | None = None, health: HealthSink | None = None,
                 websocket: WebSocketLimits | None = None, access_log=None):
        self.plane = plane
        self.rules = rules or HeaderRules()
        self.dispatcher = Dispatcher(self.rules, health)
        self.cache_flow = CacheFlow(self.dispatcher)
        self.websocket = websocket or WebSocketLimits()
        self.access_log = access_log  # a proxy.access_log.AccessLog, or None: off

    def request_done(self, record: RequestRecord) -> None:
        """The server finished a request: count it, and log it when the access log is on."""
        record_request(record)
        access_log = self.access_log
        if access_log is not None:
            access_log.write(record)

    def set_rules(self, rules: HeaderRules) -> None:
        """Reloaded `[proxy]` settings (pseudonym, trusted proxies) for requests from now on."""
        self.rules = self.dispatcher.rules = rules

    def set_websocket_limits(self, limits: WebSocketLimits) -> None:
        """Reloaded `[proxy] websocket_*` settings, for WebSockets opened from now on."""
        self.websocket = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = scope["headers"]
        host = b""
        upgrade = False
        for name, value in headers:
            if name == b"host":
                host = value
            elif name == b"upgrade":
                upgrade = True
        record = _record(scope)
        route = find_route(self.plane.routes, host, scope["raw_path"])
        if route is None:
            await self._answer_before_routing(scope, record, send, 404)
            return
        websocket = self._websocket(scope) if upgrade else None
        if websocket is False:
            await self._answer_before_routing(scope, record, send, 400)
            return
        body = _spooled_body(scope)
        if body is None:
            body = await _received_body(receive)
        request = self._upstream_request(scope, body, route, record)
        try:
            if route.target is not None:
                await self._road_warrior(route, request, send, record, websocket)
            else:
                await self._pass(route, request, send, headers, record, websocket)
        except BadRequestPath:
            await respond(send, 400)

    async def _answer_before_routing(self, scope, record: RequestRecord, send, status: int) -> None:
        """Our own answer before any request went upstream: it still gets its request id."""
        client = scope.get("client")
        record.request_id = self.rules.request_id(scope["headers"], client[0] if client else "")
        await respond(send, status)

    def _websocket(self, scope) -> WebSocketPass | None | bool:
        """A WebSocketPass for a valid `Upgrade: websocket` handshake, False (400) for an
        invalid one, None when the upgrade asks for something else (it is dropped as before)."""
        value = upgrade_value(scope["headers"])
        if value is None:
            return None
        problem = handshake_problem(scope["method"], scope.get("http_version", "1.1"), scope["headers"])
        take_over = ((scope.get("extensions") or {}).get("director") or {}).get("take_over")
        if problem is None and take_over is None:
            problem = "this connection cannot be handed over (HTTP/2?)"
        if problem is not None:
            log.info("websocket handshake refused: %s", problem)
            return False
        return WebSocketPass(self.dispatcher, self.rules, self.websocket, take_over, value)

    def _upstream_request(self, scope, body: RequestBody, route: Route, record: RequestRecord) -> UpstreamRequest:
        client = scope.get("client")
        client_ip = client[0] if client else ""
        http_version = scope.get("http_version", "1.1")
        upstream_headers, host, https = self.rules.request(scope["headers"], client_ip, scope.get("scheme", "http"),
                                                           http_version, record)
        query = scope.get("query_string") or b""
        target = scope["raw_path"] + b"?" + query if query else scope["raw_path"]
        return UpstreamRequest(
            method=scope["method"],
            target=target,
            headers=upstream_headers,
            body=body,
            client=tuple(client) if client else None,
            server=tuple(scope["server"]) if scope.get("server") else None,
            https=https,
            http_version=http_version,
            host=host.decode("latin-1"),
            document_root=route.document_root,
            script_filename=route.script_filename,
        )

    async def _pass(self, route: Route, request: UpstreamRequest, send, headers, record: RequestRecord,
                    websocket: WebSocketPass | None) -> None:
        director = self.plane.directors.get(route.director)
        if director is None:
            log.warning("route to director %s: no such director (deleted?)", route.director)
            await respond(send, 503, ROAD_WARRIOR.retry_after_header)
            return
        record.director = director
        if director.shaper is not None:
            name = _client_choice(route.bucket_from, headers) if route.bucket_from is not None else None
            bucket = record.bucket = director.shaper.lookup(name or route.bucket)
            send = with_header(send, bucket.header)
        pinned = None
        if route.backend_from is not None:
            chosen = _client_choice(route.backend_from, headers)
            if chosen is not None:
                pinned = director.by_name.get(chosen)
                problem = _pinned_problem(pinned)
                if problem:
                    log.warning("director %s: client-chosen backend %s is %s", director.name, chosen, problem)
                    await self.dispatcher.refuse(director, send, f"backend {chosen} {problem}")
                    return
        sticky = director.sticky.session(headers) if director.sticky is not None and pinned is None else None
        if websocket is not None:
            websocket.prepare(request)
            await websocket.through_director(director, request, send, pinned, record, sticky)
            return
        if director.cache is not None and pinned is None:  # SPEC §15; a client-chosen backend bypasses it
            await self.cache_flow.pass_request(director, request, send, record, sticky)
            return
        await self.dispatcher.pass_request(director, request, send, pinned, record, sticky)

    async def _road_warrior(self, route: Route, request: UpstreamRequest, send, record: RequestRecord,
                            websocket: WebSocketPass | None) -> None:
        """Straight to one address: no queue, no health checks, no retries (SPEC §7.4)."""
        upstream = self.plane.upstream_for(route.target)  # the route may have been reloaded meanwhile
        record.upstream_name = route.target
        record.attempts = 1
        if websocket is not None:
            websocket.prepare(request)
            await websocket.direct(upstream, request, send, ROAD_WARRIOR.timeouts)
            return
        sent_at = monotonic()
        try:
            response, first = await open_response(upstream, request, ROAD_WARRIOR.timeouts)
            record.upstream_time = monotonic() - sent_at
        except UpstreamError as err:
            log.info("road warrior %s: %s", route.target, err.reason)
            await respond(send, err.status, ROAD_WARRIOR.retry_after_header if err.status == 503 else ())
            return
        try:
            await relay(response, send, self.rules, request.method == "HEAD", first=first)
        finally:
            response.release()  # an unfinished body closes the connection (on_client_abort close)


def _record(scope) -> RequestRecord:
    """The server's record of this request (a new one when the server made none: unit tests)."""
    ext = scope.get("extensions") or {}
    spooled = ext.get("director")
    record = spooled.get("record") if spooled is not None else None
    return record if record is not None else RequestRecord(scope)


def _spooled_body(scope) -> RequestBody | None:
    """The body Director's server spooled, or None (another ASGI server: unit tests)."""
    ext = scope.get("extensions") or {}
    spooled = ext.get("director")
    if spooled is not None:
        return RequestBody(spooled["body_file"], spooled["body_length"])
    return None


async def _received_body(receive) -> RequestBody:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return RequestBody(b"".join(chunks))


def _client_choice(source: tuple[str, bytes], headers) -> str | None:
    kind, wanted = source
    if kind == "header":
        for name, value in headers:
            if name == wanted:
                return value.decode("latin-1").strip() or None
        return None
    value = cookie_value(headers, wanted, any_case=True)
    return value.decode("latin-1") if value is not None else None


def _pinned_problem(backend) -> str | None:
    if backend is None or backend.pool is None:
        return "unknown"
    if not backend.enabled:
        return "disabled"
    if backend.terminating:
        return "being removed"
    if backend.health != "online":
        return backend.health if backend.health == "offline" else "not online"
    return None
