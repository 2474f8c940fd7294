"""The health monitor: one asyncio task per backend on the caller's event loop (SPEC §8).

Inputs: active checks (its own timers), passive failures and live activity reported by the
data plane (`report_failure`, `report_activity`, or channel messages via the worker), and
configuration changes (`reload()`, a `config.changed` push, or a 1-second version poll).
Output, per transition: one log line, `on_transition(backend_id, state, error)` for the data
plane in this process, the database row (health_store.record_health), and a `health.changed`
message to channel-layer group `director.health` for other processes and the status page.

Several monitors (runproxy processes, healthworkers, nodes) share the backends through
per-backend leases in Redis (`leases.py`): each checks only the backends it holds, and takes
passive failures only for those (every monitor hears them on group `director.health.reports`).
Without Redis the monitor holds every backend.

Database work runs in one dedicated thread, never on the event loop (the loop is shared with
live traffic in runproxy); one thread keeps writes in order and holds one connection.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from channels.layers import get_channel_layer
from django.utils import timezone

from balancer import health_store, services
from balancer.dbthread import DatabaseThread
from balancer.health_store import CheckFacts
from proxy.channel_names import HEALTH_CHANGED, HEALTH_GROUP
from proxy.outage_log import OutageLog
from proxy.upstream import Upstream, make_upstream

from .history import CheckHistory
from .leases import LeaseKeeper, keeper_from_settings, lease_ttl, tick_interval
from .probe import ProbeResult, probe
from .session import OFFLINE, HealthSession, Transition, comes_back
from .targets import Target, load_targets, store_checks, stored_states, targets_from_rows
from .wakeup import Wakeup

log = logging.getLogger("director.health")

CONFIG_POLL = 1.0  # seconds between ConfigVersion polls (safety net for missed pushes)
FLUSH_INTERVAL = 5.0  # seconds between batched last_checked writes
STOP_GRACE = 5.0  # seconds stop() waits for pending database writes

TransitionCallback = Callable[[int, str, str], None]
FROM_SETTINGS = object()  # HealthMonitor(leases=...) default: Redis leases when REDIS_URL is set


class _Watch:
    """Runtime of one checked backend: its target, session, client and timer task."""

    __slots__ = ("target", "session", "upstream", "request", "wake", "task", "history", "held")

    def __init__(self, target: Target, session: HealthSession, upstream: Upstream, held: bool):
        self.target = target
        self.session = session
        self.upstream = upstream
        self.request = target.request()
        self.wake = Wakeup()
        self.task: asyncio.Task | None = None
        self.history = CheckHistory()
        self.held = held  # this monitor holds the backend's lease: it checks it


class HealthMonitor:
    """Checks every non-terminating backend of every director; see the module docstring."""

    def __init__(self, *, on_transition: TransitionCallback | None = None, channel_layer=None,
                 clock: Callable[[], float] = time.monotonic, config_poll: float = CONFIG_POLL,
                 flush_interval: float = FLUSH_INTERVAL, leases: LeaseKeeper | None = FROM_SETTINGS,
                 fallback_rows: Callable[[], tuple] | None = None):
        """`fallback_rows()`: the data plane's rows, checked when the database is away at start."""
        self.on_transition = on_transition
        self._fallback_rows = fallback_rows
        self._layer = channel_layer
        self._clock = clock
        self._config_poll = config_poll
        self._flush_interval = flush_interval
        self._watches: dict[int, _Watch] = {}
        self._version: int | None = None
        self._checked: dict = {}  # backend id -> (wall time, error) since the last flush
        self._pending: set[asyncio.Task] = set()  # persistence + publication of transitions
        self._outbox: list[tuple] = []  # transitions waiting to be stored and broadcast
        self._writer: asyncio.Task | None = None
        self._background: list[asyncio.Task] = []
        self._reload_lock = asyncio.Lock()
        self._reload_wanted = False  # coalesces bursts of reload requests into one load
        self._database: DatabaseThread | None = None
        self._leases = keeper_from_settings() if leases is FROM_SETTINGS else leases
        self._lease_wake = Wakeup()
        self.running = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the configuration (raises when the database is unusable) and start checking."""
        if self.running:
            return
        self._database = DatabaseThread("director-health-db")
        if self._layer is None:
            self._layer = get_channel_layer()
        self.running = True
        try:
            await self.reload()
            if self._leases is not None:
                await self._lease_tick()  # check what this monitor holds, not everything, from the start
        except BaseException:
            await self.stop()
            raise
        self._background = [asyncio.ensure_future(self._poll_config()), asyncio.ensure_future(self._flush_loop())]
        if self._leases is not None:
            self._background.append(asyncio.ensure_future(self._lease_loop()))

    async def stop(self) -> None:
        """Cancel every task, finish pending writes (bounded), close connections."""
        if self._database is None:
            return
        self.running = False
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        await asyncio.gather(*(self._retire(w) for w in list(self._watches.values())), return_exceptions=True)
        self._watches.clear()
        if self._leases is not None:
            await self._leases.release()  # others take over at their next tick
            await self._leases.close()
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=STOP_GRACE)
        try:
            await self._flush()
        except Exception as exc:  # noqa: BLE001 - stopping must finish; only "last checked" is lost
            log.warning("health monitor could not store check times at stop: %s", exc)
        finally:
            database, self._database = self._database, None
            await database.close()

    # --- inputs ------------------------------------------------------------------------

    def holds(self, backend_id: int) -> bool:
        """True when this monitor checks the backend (holds its lease)."""
        watch = self._watches.get(backend_id)
        return watch is not None and watch.held

    def report_failure(self, backend_id: int, error: str) -> None:
        """A live request to the backend failed: offline at once (SPEC §7.5). Only the
        monitor holding the backend acts on it; every monitor hears every report."""
        watch = self._watches.get(backend_id)
        if watch is None or not watch.held:
            return
        transition = watch.session.passive_failure(error)
        if transition is not None:
            self._publish(watch.target, transition)
        watch.wake.set()

    def report_activity(self, backend_ids: Iterable[int]) -> None:
        """These backends served live traffic just now (opportunistic mode)."""
        for backend_id in backend_ids:
            watch = self._watches.get(backend_id)
            if watch is not None:
                watch.session.activity()

    async def reload(self) -> None:
        """Re-read directors and backends; start, stop or reconfigure checks. The state of a
        backend that stays is kept."""
        self._reload_wanted = True
        async with self._reload_lock:
            if not self._reload_wanted:
                return  # a reload that began after this request already covered it
            self._reload_wanted = False
            try:
                version, targets = await self._db(load_targets)
            except Exception:
                if self._version is not None or self._fallback_rows is None:
                    raise
                version, targets = targets_from_rows(*self._fallback_rows())
                version = None  # reload from the database as soon as it answers
                log.warning("health monitor: database unreachable, checking the %d backends of the local snapshot",
                            len(targets))
            if not self.running:
                return
            self._version = version
            for backend_id in [i for i in self._watches if i not in targets]:
                await self._retire(self._watches.pop(backend_id))
            for backend_id, target in targets.items():
                watch = self._watches.get(backend_id)
                if watch is None:
                    self._add(target)
                elif not watch.target.same_checks(target):
                    await self._reconfigure(watch, target)
            self._lease_wake.set()  # claim new backends now, not at the next tick

    def stats(self) -> dict[int, dict]:
        """Per backend id: names, state, whether this monitor holds it, and its checks here
        (count, the last one, the duration histogram: `CheckHistory.as_dict`)."""
        return {
            backend_id: {"director": w.target.director, "backend": w.target.backend, "state": w.session.state,
                         "mode": w.session.policy.mode, "held": w.held, **w.history.as_dict()}
            for backend_id, w in self._watches.items()
        }

    # --- per-backend tasks ---------------------------------------------------------------

    def _add(self, target: Target) -> None:
        try:
            upstream = make_upstream(target.address())
        except ValueError as exc:
            log.error("director %s: backend %s not checked: %s", target.director, target.backend, exc)
            return
        session = HealthSession(target.policy, state=target.state, clock=self._clock)
        self._start(_Watch(target, session, upstream, held=self._leases is None))

    def _start(self, watch: _Watch) -> None:
        self._watches[watch.target.backend_id] = watch
        watch.task = asyncio.ensure_future(self._run(watch))

    async def _reconfigure(self, watch: _Watch, target: Target) -> None:
        if not target.same_address(watch.target):  # TLS fields changed (or the url: SPEC forbids it)
            await self._retire(watch)
            upstream = make_upstream(target.address())
            watch = _Watch(target, watch.session, upstream, watch.held)
            watch.session.reconfigure(target.policy)
            self._start(watch)
            return
        watch.target = target
        watch.request = target.request()
        watch.session.reconfigure(target.policy)
        watch.wake.set()

    async def _retire(self, watch: _Watch) -> None:
        if watch.task is not None:
            watch.task.cancel()
            await asyncio.gather(watch.task, return_exceptions=True)
        try:
            await watch.upstream.close()
        except Exception:
            log.exception("closing the health-check client of %s", watch.target.url)

    async def _run(self, watch: _Watch) -> None:
        """Wait until the session says a check is due (or something wakes us), check, repeat."""
        session = watch.session
        while True:
            watch.wake.clear()
            if not watch.held:
                await watch.wake.wait()  # the lease keeper wakes us when we gain the backend
                continue
            due = session.due_at()
            delay = None if due is None else due - self._clock()
            if delay is not None and delay <= 0:
                await self._check(watch)
                continue
            await watch.wake.wait(delay)

    async def _check(self, watch: _Watch) -> None:
        target = watch.target
        started = self._clock()
        try:
            result = await probe(watch.upstream, watch.request, target.timeouts, target.expected)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("health check of director %s backend %s raised", target.director, target.backend)
            result = ProbeResult(False, None, f"health check error: {type(exc).__name__}: {exc}")
        duration = self._clock() - started
        checked_at = timezone.now()
        watch.history.add(result, duration, checked_at.timestamp())
        check = CheckFacts(result.ok, result.status, duration)
        self._checked[target.backend_id] = (checked_at, result.error, check)
        transition = watch.session.record(result.ok, result.error)
        if transition is not None:
            self._publish(target, transition, check)

    # --- leases ------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            intervals = [w.session.policy.interval for w in self._watches.values()]
            await self._lease_wake.wait(tick_interval(intervals))
            self._lease_wake.clear()
            try:
                await self._lease_tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("health lease tick failed")

    async def _lease_tick(self) -> None:
        """Renew and claim leases; stop checking what was lost; take over what was gained:
        from the stored state (the previous holder's verdict), with a check at once."""
        watches = dict(self._watches)
        change = await self._leases.tick({i: lease_ttl(w.session.policy.interval) for i, w in watches.items()})
        for backend_id in change.lost:
            watch = watches.get(backend_id)
            if watch is not None:
                watch.held = False
        gained = [watches[i] for i in change.gained if i in watches]
        if not gained:
            return
        try:
            states = await self._db(stored_states, [w.target.backend_id for w in gained])
        except Exception as exc:  # noqa: BLE001 - database away: continue from what we knew
            log.warning("health monitor could not read the stored states it takes over: %s", exc)
            states = {}
        for watch in gained:
            watch.session.take_over(states.get(watch.target.backend_id, watch.session.state))
            watch.held = True
            watch.wake.set()
        log.debug("health monitor took over %d backends", len(gained))

    # --- outputs -----------------------------------------------------------------------

    def _publish(self, target: Target, transition: Transition, check: CheckFacts | None = None) -> None:
        """Log and tell the data plane now; persist, then broadcast, in the background.

        offline -> online may be turned into "disabled" by sticky offline mode: then the data
        plane is not told here at all. Its snapshot swap (the database change is announced
        on commit) brings `online` and `enabled = False` together, so the backend never
        looks routable in between.
        """
        if transition.new == OFFLINE:
            suffix = f": {transition.error}" if transition.error else ""
            log.warning("director %s: backend %s is now offline%s", target.director, target.backend, suffix)
        else:
            log.info("director %s: backend %s is now %s", target.director, target.backend, transition.new)
        maybe_sticky = comes_back(transition.old, transition.new)
        if not maybe_sticky:
            self._notify_local(target, transition)
        self._outbox.append((target, transition, timezone.now(), maybe_sticky, check))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_outbox())
            self._pending.add(self._writer)
            self._writer.add_done_callback(self._pending.discard)

    async def _write_outbox(self) -> None:
        """Store what accumulated while the last batch was written, in one transaction (a
        mass outage is hundreds of transitions), then broadcast them; repeat until empty."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                records = await self._db(_persist, batch)
            except Exception:
                log.exception("could not store %d health transitions", len(batch))
                records = {}
            last = {item[0].backend_id: item for item in batch}  # an earlier one was not stored
            await asyncio.gather(*(self._announce(records.get(target.backend_id), target, transition, maybe_sticky)
                                   for target, transition, _, maybe_sticky, _ in last.values()))

    async def _announce(self, record, target: Target, transition: Transition, maybe_sticky: bool) -> None:
        disabled = record is not None and record.disabled
        changed_at = record.changed_at.isoformat() if record is not None and record.changed_at else None
        if maybe_sticky and not disabled:
            self._notify_local(target, transition)
        if self._layer is None:
            return
        message = {"type": HEALTH_CHANGED, "backend": target.backend_id, "director": target.director,
                   "backend_name": target.backend, "state": transition.new, "error": transition.error,
                   "sticky_disabled": disabled, "changed_at": changed_at}
        try:
            await self._layer.group_send(HEALTH_GROUP, message)
        except Exception as exc:  # noqa: BLE001 - other processes also poll the stored states
            log.warning("could not broadcast health of director %s backend %s: %s", target.director, target.backend, exc)

    def _notify_local(self, target: Target, transition: Transition) -> None:
        if self.on_transition is None:
            return
        try:
            self.on_transition(target.backend_id, transition.new, transition.error)
        except Exception:
            log.exception("on_transition failed for director %s backend %s", target.director, target.backend)

    # --- database ------------------------------------------------------------------------

    def _db(self, func, *args):
        """Run `func(*args)` in the monitor's database thread; awaitable."""
        return self._database.run(func, *args)

    async def _poll_config(self) -> None:
        outage = OutageLog(log, "health monitor could not read the configuration")
        while True:
            await asyncio.sleep(self._config_poll)
            try:
                version = await self._db(services.current_version)
                if version != self._version:
                    await self.reload()
                outage.ok()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database down: keep checking what we know
                outage.failed(exc)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - only "last checked" display is late
                log.warning("health monitor could not store check times: %s", exc)

    async def _flush(self) -> None:
        results, self._checked = self._checked, {}
        if results:
            await self._db(store_checks, results)


def _persist(batch) -> dict[int, health_store.HealthRecord]:
    """Store a batch of transitions in one transaction (sticky offline mode is applied
    atomically by the service). Only the last transition of a backend in the batch counts:
    it is the state the backend is in."""
    last = {target.backend_id: (target, transition, at, check) for target, transition, at, _, check in batch}
    records = health_store.store_health_many((i, tr.new, tr.error, at, check, transition_reason(tr, check))
                                             for i, (_, tr, at, check) in last.items())
    for backend_id, (target, *_) in last.items():
        record = records.get(backend_id)
        if record is not None and record.disabled:
            log.warning("director %s: backend %s disabled due to sticky offline mode", target.director, target.backend)
    return records


def transition_reason(transition: Transition, check: CheckFacts | None) -> str:
    """What the stored transition says happened."""
    if transition.passive:
        return f"live request failed: {transition.error}"
    if transition.new == OFFLINE:
        return transition.error
    if check is not None and check.status is not None:
        return f"health check passed (HTTP {check.status})"
    return "health check passed"
