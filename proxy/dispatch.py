"""One request through a director: choose, send, retry, relay (SPEC §7.2-7.7).

Slots are taken by `DirectorRuntime.acquire()` and always given back here, whatever
happens: success, upstream failure, or the client going away (CancelledError).
"""
from __future__ import annotations

import asyncio
import logging

from proxy.director import DirectorRuntime, Refused
from proxy.errors import UpstreamError
from proxy.relay import finish_after_abort, first_chunk, open_response, relay
from proxy.responses import respond
from proxy.runtime import BackendRuntime
from proxy.upstream import UpstreamRequest

log = logging.getLogger("director.proxy")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class HealthSink:
    """Where passive health facts go; runproxy plugs the monitor (or a channel) in."""

    def failed(self, backend_id: int, reason: str) -> None:
        pass

    def activity(self, backend_id: int) -> None:
        pass


class Dispatcher:
    def __init__(self, rules, health: HealthSink | None = None):
        self.rules = rules
        self.health = health or HealthSink()

    async def refuse(self, director: DirectorRuntime, send, reason: str, status: int = 503) -> None:
        """A director-generated error response (503s carry Retry-After and count as dropped)."""
        extra = ()
        if status == 503:
            director.dropped += 1
            extra = director.settings.retry_after_header
        director.status_counts[status // 100] += 1
        log.debug("director %s: %s -> %d", director.name, reason, status)
        await respond(send, status, extra)

    async def pass_request(self, director: DirectorRuntime, request: UpstreamRequest, send, pinned: BackendRuntime | None = None) -> None:
        settings = director.settings
        exclude: set = set()
        last_error: UpstreamError | None = None
        attempts = 0
        may_resend = request.method in IDEMPOTENT
        while True:
            if pinned is not None:
                backend, pinned = pinned, None
                director.take_slot(backend)
            else:
                try:
                    backend = await director.acquire(exclude, retrying=attempts > 0)
                except Refused as refused:
                    if last_error is not None:
                        await self.refuse(director, send, f"{refused.reason} after: {last_error.reason}", last_error.status)
                    else:
                        await self.refuse(director, send, refused.reason)
                    return
            self.health.activity(backend.id)
            try:
                response, first = await self._send(director, backend, request)
            except UpstreamError as err:
                director.release(backend)
                self.backend_failed(backend, err)
                last_error = err
                attempts += 1
                if attempts > settings.max_retry_count or not (may_resend or err.safe_to_resend):
                    await self.refuse(director, send, err.reason, err.status)
                    return
                exclude.add(backend)
                continue
            except BaseException:
                director.release(backend)
                raise
            await self._relay(director, backend, response, first, request, send)
            return

    async def _send(self, director: DirectorRuntime, backend: BackendRuntime, request: UpstreamRequest):
        settings = director.settings
        if settings.on_client_abort == "close":
            return await open_response(backend.upstream, request, settings.timeouts)
        # notify/ignore: the upstream exchange must outlive a client that goes away now.
        notify = settings.on_client_abort == "notify"
        task = asyncio.get_running_loop().create_task(
            backend.upstream.send(request, settings.timeouts, notify_abort=notify))
        try:
            response = await asyncio.shield(task)
        except asyncio.CancelledError:
            director.take_slot(backend)  # held by the background continuation below
            task.add_done_callback(lambda t: self._after_abandoned_send(director, backend, t))
            if notify:
                task.cancel()  # FastCGI sends ABORT_REQUEST now and reads to END_REQUEST
            raise
        try:
            return response, await first_chunk(response, request)
        except asyncio.CancelledError:
            director.take_slot(backend)  # held until the policy has finished the response
            finish_after_abort(response, settings.on_client_abort, lambda: director.release(backend))
            raise

    def _after_abandoned_send(self, director, backend, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            director.release(backend)
            return
        finish_after_abort(task.result(), director.settings.on_client_abort, lambda: director.release(backend))

    async def _relay(self, director, backend, response, first, request, send) -> None:
        released = False
        try:
            status = await relay(response, send, self.rules, request.method == "HEAD", first=first)
            director.status_counts[status // 100] += 1
            backend.status_counts[status // 100] += 1
        except UpstreamError as err:
            # After the head went out: the backend broke mid-body. proxy.server closes the
            # client connection when we re-raise.
            response.release()
            self.backend_failed(backend, err)
            raise
        except asyncio.CancelledError:
            released = True
            finish_after_abort(response, director.settings.on_client_abort, lambda: director.release(backend))
            raise
        except BaseException:
            response.release()
            raise
        else:
            response.release()
        finally:
            if not released:
                director.release(backend)

    def backend_failed(self, backend: BackendRuntime, err: UpstreamError) -> None:
        """Passive health: a live request failed on this backend."""
        backend.failures += 1
        backend.status_counts[0] += 1
        if err.marks_offline and backend.pool is not None:
            backend.director.set_health(backend, "offline")
            self.health.failed(backend.id, err.reason)
