"""One request through a director: choose, send, retry, relay (SPEC §7.2-7.7).

Slots (proxy.slots leases) are taken by `DirectorRuntime.acquire()` and always given back
here, whatever happens: success, upstream failure, or the client going away
(CancelledError), when the lease is transferred to whatever finishes the upstream exchange.
"""
from __future__ import annotations

import asyncio
import logging
from time import monotonic

from proxy.director import DirectorRuntime, Refused
from proxy.errors import UpstreamError
from proxy.relay import finish_after_abort, first_chunk, open_response, relay
from proxy.request_record import RequestRecord
from proxy.responses import respond
from proxy.runtime import BackendRuntime
from proxy.sendfile import requested_file
from proxy.slots import Slot
from proxy.sticky import StickySession
from proxy.upstream import UpstreamRequest, UpstreamResponse
from proxy.upstream.base import IDEMPOTENT

log = logging.getLogger("director.proxy")


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

    async def refuse(self, director: DirectorRuntime, send, reason: str, status: int = 503, shadow=None) -> None:
        """A director-generated error response (503s carry Retry-After and count as dropped).
        `shadow`: proxy.cache_flow's shadow delivery, which may answer from the cache instead."""
        if shadow is not None and await shadow(send):
            log.debug("director %s: %s -> %d, answered from the cache", director.name, reason, status)
            return
        extra: tuple | list = ()
        if status == 503:
            director.dropped += 1
            extra = director.settings.retry_after_header
        director.status_counts[status // 100] += 1
        log.debug("director %s: %s -> %d", director.name, reason, status)
        await respond(send, status, extra)

    async def pass_request(self, director: DirectorRuntime, request: UpstreamRequest, send,
                           pinned: BackendRuntime | None = None, record: RequestRecord | None = None,
                           sticky: StickySession | None = None, *, shadow=None, watch=None) -> None:
        """`sticky`: the request's sticky-cookie session (proxy.sticky); `shadow` goes to
        `refuse`; `watch(response, first)` returns the response to relay in its place
        (proxy.cache_flow collects the body through it)."""
        prefer = sticky.preferred(director) if sticky is not None else None
        sent = await self.send_with_retries(director, request, send, pinned, self._send, record,
                                            shadow=shadow, prefer=prefer)
        if sent is not None:
            slot, response, first = sent
            if sticky is not None:
                send = sticky.sender(slot.backend, send)
            if watch is not None:
                response = watch(response, first)
            await self.relay_response(director, slot, response, first, request, send)

    async def send_with_retries(self, director: DirectorRuntime, request: UpstreamRequest, send,
                                pinned: BackendRuntime | None, attempt, record: RequestRecord | None = None, *,
                                shadow=None, prefer: BackendRuntime | None = None,
                                ) -> tuple[Slot, UpstreamResponse, bytes] | None:
        """Choose a backend and `await attempt(director, slot, request)` -> (response, first
        body chunk), again on another backend after a failure as SPEC §7.5 allows. Returns the
        slot (the caller now owns it), response and first chunk; None when the client was
        already answered (refused, or failed after the retries). `record` gets the backends
        tried, the attempts and the upstream response time. `prefer`: the backend a sticky
        cookie names (DirectorRuntime.acquire)."""
        if record is None:
            record = RequestRecord(None)
        settings = director.settings
        exclude: set = set()
        last_error: UpstreamError | None = None
        attempts = 0
        may_resend = request.method in IDEMPOTENT
        bucket = record.bucket
        while True:
            if pinned is not None:
                slot, pinned = director.take_slot(pinned), None
            else:
                try:
                    if bucket is None:
                        slot = director.slot_now(exclude, prefer)
                        if slot is None:
                            slot = await director.acquire(exclude, retrying=attempts > 0, prefer=prefer)
                    else:
                        slot = await director.acquire_in_bucket(bucket, exclude, retrying=attempts > 0, prefer=prefer)
                except Refused as refused:
                    if last_error is not None:
                        await self.refuse(director, send, f"{refused.reason} after: {last_error.reason}", last_error.status,
                                          shadow)
                    else:
                        await self.refuse(director, send, refused.reason, shadow=shadow)
                    return None
            backend = record.backend = slot.backend
            record.attempts += 1
            self.health.activity(backend.id)
            sent_at = monotonic()
            try:
                response, first = await attempt(director, slot, request)
                record.upstream_time = monotonic() - sent_at
            except UpstreamError as err:
                slot.release()
                self.backend_failed(backend, err)
                last_error = err
                attempts += 1
                if attempts > settings.max_retry_count or not (may_resend or err.safe_to_resend):
                    await self.refuse(director, send, err.reason, err.status, shadow)
                    return None
                exclude.add(backend)
                continue
            except BaseException:
                slot.release()  # a no-op when the slot went to a background finisher
                raise
            return slot, response, first

    def _send(self, director: DirectorRuntime, slot: Slot, request: UpstreamRequest):
        """The attempt of `send_with_retries`: (response, first body chunk), awaitable."""
        settings = director.settings
        if settings.on_client_abort == "close":  # open_response's coroutine itself: one layer less
            return open_response(slot.backend.upstream, request, settings.timeouts)
        return self._send_outliving_client(director, slot, request)

    async def _send_outliving_client(self, director: DirectorRuntime, slot: Slot, request: UpstreamRequest):
        """on_client_abort notify/ignore: the upstream exchange must outlive a client that
        goes away now."""
        settings = director.settings
        upstream = slot.backend.upstream
        notify = settings.on_client_abort == "notify"
        task = asyncio.get_running_loop().create_task(
            upstream.send(request, settings.timeouts, notify_abort=notify))
        try:
            response = await asyncio.shield(task)
        except asyncio.CancelledError:
            finisher = slot.transfer()  # held by the background continuation below
            task.add_done_callback(lambda t: self._after_abandoned_send(director, finisher, t))
            if notify:
                task.cancel()  # FastCGI sends ABORT_REQUEST now and reads to END_REQUEST
            raise
        try:
            return response, await first_chunk(response, request)
        except asyncio.CancelledError:
            finish_after_abort(response, settings.on_client_abort, slot.transfer().release)
            raise

    def _after_abandoned_send(self, director, slot: Slot, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            slot.release()
            return
        finish_after_abort(task.result(), director.settings.on_client_abort, slot.release)

    async def relay_response(self, director, slot: Slot, response, first, request, send) -> None:
        """Relay the response to the client, count its status, release response and slot."""
        backend = slot.backend
        if director.sendfile is not None and (wanted := requested_file(response.headers)) is not None:
            await self._send_file(director, slot, response, first, wanted, request, send)
            return
        try:
            status = await relay(response, send, self.rules, request.method == "HEAD", first=first)
            backend.failure_streak = 0
            director.status_counts[status // 100] += 1
            backend.status_counts[status // 100] += 1
        except UpstreamError as err:
            # After the head went out: the backend broke mid-body. proxy.server_protocol closes the
            # client connection when we re-raise.
            response.release()
            self.backend_failed(backend, err)
            raise
        except asyncio.CancelledError:
            finish_after_abort(response, director.settings.on_client_abort, slot.transfer().release)
            raise
        except BaseException:
            response.release()
            raise
        else:
            response.release()
        finally:
            slot.release()  # a no-op once transferred

    async def _send_file(self, director, slot: Slot, response, first, wanted: bytes, request, send) -> None:
        """X-Sendfile: the backend's part ends with its discarded body (its slot is free
        before the file goes out), then the local file answers the client."""
        backend = slot.backend
        try:
            status = await director.sendfile.answer(response, first, wanted, request, send, self.rules,
                                                    backend_done=slot.release)
        except asyncio.CancelledError:
            if slot.held:  # the client left while the backend's body was being discarded
                finish_after_abort(response, director.settings.on_client_abort, slot.transfer().release)
            raise
        except BaseException:
            response.release()
            raise
        finally:
            slot.release()  # a no-op once released or transferred
        backend.failure_streak = 0
        director.status_counts[status // 100] += 1
        backend.status_counts[status // 100] += 1

    def backend_failed(self, backend: BackendRuntime, err: UpstreamError) -> None:
        """Passive health: a live request failed on this backend. It goes offline after
        `passive_failure_threshold` such failures in a row (one per request: a request is
        never sent to the same backend twice by the dispatcher)."""
        backend.failures += 1
        backend.status_counts[0] += 1
        if not err.marks_offline or backend.pool is None:
            return
        backend.failure_streak += 1
        if backend.failure_streak >= backend.director.settings.passive_failure_threshold:
            backend.director.set_health(backend, "offline")
            self.health.failed(backend.id, err.reason)
