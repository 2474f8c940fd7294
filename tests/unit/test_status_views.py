"""Pure parts of the operator views: overview merging, request rates, the shared facts cache,
the status feed's fan-out and pokes, and HAProxy CSV details."""
from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest

from balancer import haproxy_csv, overview
from balancer.status_feed import RateTracker, StatusFeed

COUNTER = {"current": 0, "max": 0, "total": 0}
AT_100 = datetime.fromtimestamp(100.0, timezone.utc)


def live_backend(backend_id=1, name="b1", ok=0, **extra):
    return {"id": backend_id, "name": name, "role": "active", "enabled": True, "health": "online",
            "terminating": False, "capacity": 0, "load": dict(COUNTER), "failures": 0,
            "responses": {"failed": 0, "1xx": 0, "2xx": ok, "3xx": 0, "4xx": 0, "5xx": 0}, **extra}


def snapshot(*backends, ok=None):
    total = sum(b["responses"]["2xx"] for b in backends) if ok is None else ok
    return {"directors": [{"id": 7, "name": "app", "enabled": True, "load": dict(COUNTER), "queued": dict(COUNTER),
                           "dropped": 0, "responses": {"failed": 0, "1xx": 0, "2xx": total, "3xx": 0, "4xx": 0, "5xx": 0},
                           "backends": list(backends)}]}


@pytest.mark.parametrize("enabled, terminating, health, state", [
    (False, True, "online", "disabled"), (True, True, "online", "draining"), (True, False, "offline", "offline"),
])
def test_display_state_precedence(enabled, terminating, health, state):
    assert overview.display_state(enabled, terminating, health) == state


def test_merge_without_data_plane_uses_stored_rows_and_zero_counters():
    facts = overview.Facts(
        directors=({"id": 2, "name": "zeta", "enabled": True}, {"id": 1, "name": "alpha", "enabled": False}),
        backends=({"id": 5, "director_id": 1, "name": "b", "role": "backup", "enabled": True, "terminating": False,
                   "capacity": 4, "health_state": "offline", "last_checked": None, "last_error": "refused",
                   "health_changed_at": None},),
        read_at=0.0)
    merged = overview.merge(None, facts)
    assert merged["live"] is False
    assert [d["name"] for d in merged["directors"]] == ["alpha", "zeta"]
    backend = merged["directors"][0]["backends"][0]
    assert (backend["state"], backend["last_error"], backend["load"], overview.total_responses(backend)) == \
        ("offline", "refused", COUNTER, 0)


def test_merge_prefers_live_health_and_adds_stored_facts():
    facts = overview.Facts((), ({"id": 1, "health_state": "online", "last_error": "boom", "last_checked": None,
                                 "health_changed_at": None},), 0.0)
    merged = overview.merge(snapshot(live_backend(health="offline")), facts)
    backend = merged["directors"][0]["backends"][0]
    assert merged["live"] and backend["health"] == "offline" and backend["last_error"] == "boom"


def test_rates_from_consecutive_totals_with_gaps_and_removals():
    rates = RateTracker(interval=1.0, window=3)
    for now, ok in ((100.0, 0), (101.0, 10), (102.0, 30), (103.0, 30), (104.0, 31)):
        rates.sample(snapshot(live_backend(ok=ok))["directors"], now)
    assert rates.rate("b", 1) == 1.0 and rates.rate("d", 7) == 1.0
    assert rates.series("b") == {"1": [[102.0, 20.0], [103.0, 0.0], [104.0, 1.0]]}  # window: 3 samples
    rates.sample(snapshot(live_backend(ok=99))["directors"], 120.0)  # a gap: no made-up average
    assert rates.rate("b", 1) is None
    rates.sample(snapshot(live_backend(ok=101))["directors"], 121.0)
    assert rates.rate("b", 1) == 2.0
    rates.sample(snapshot()["directors"], 121.0)
    assert rates.rate("b", 1) is None and rates.series("b") == {}


class CountingReader:
    def __init__(self):
        self.calls = 0
        self.release = threading.Event()

    def __call__(self):
        self.calls += 1
        self.release.wait(5)
        return overview.Facts((), (), float(self.calls))


async def test_facts_cache_shares_reads_between_callers_and_expires():
    now = [0.0]
    reader = CountingReader()
    cache = overview.FactsCache(max_age=1.0, reader=reader, clock=lambda: now[0])
    waiting = [asyncio.ensure_future(cache.get()) for _ in range(5)]
    await asyncio.sleep(0.05)
    reader.release.set()
    assert {f.read_at for f in await asyncio.gather(*waiting)} == {1.0}
    assert reader.calls == 1
    now[0] = 0.5
    assert (await cache.get()).read_at == 1.0 and reader.calls == 1
    cache.invalidate()
    assert (await cache.get()).read_at == 2.0


async def test_facts_cache_keeps_last_facts_when_the_database_fails():
    def broken():
        raise OSError("no route")
    cache = overview.FactsCache(reader=broken)
    assert (await cache.get()) is overview.EMPTY_FACTS
    assert cache.error.startswith("database unreachable: OSError: no route")


class FixedFacts(overview.FactsCache):
    def __init__(self):
        super().__init__()
        self.invalidated = 0

    def invalidate(self):
        self.invalidated += 1

    async def get(self):
        return overview.EMPTY_FACTS


async def test_feed_fans_out_one_frame_per_tick_and_pushes_at_once_when_poked():
    totals = {"ok": 0}
    facts = FixedFacts()
    feed = StatusFeed(interval=0.2, window=10, facts=facts, snapshot=lambda: snapshot(live_backend(ok=totals["ok"])))
    inboxes = [asyncio.Queue(), asyncio.Queue()]
    for inbox in inboxes:
        feed.subscribe(inbox.put)
    try:
        frames = [await asyncio.wait_for(inbox.get(), 2) for inbox in inboxes]
        assert frames[0] is frames[1]  # built once, sent to every subscriber
        totals["ok"] = 10
        frame = await asyncio.wait_for(inboxes[0].get(), 2)
        assert frame["type"] == "status" and frame["directors"][0]["backends"][0]["rate"] is not None
        loop = asyncio.get_running_loop()
        while not inboxes[0].empty():
            inboxes[0].get_nowait()
        poked = loop.time()
        feed.poke()
        await asyncio.wait_for(inboxes[0].get(), 2)
        assert loop.time() - poked < 0.1 and facts.invalidated == 1
        assert set(feed.history()["backends"]) == {"1"}
    finally:
        await feed.stop()


async def test_feed_survives_a_failing_snapshot():
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] <= 2:  # the first tick's sample and frame
            raise RuntimeError("mid-reload")
        return snapshot(live_backend())

    feed = StatusFeed(interval=0.05, window=10, facts=FixedFacts(), snapshot=flaky)
    inbox = asyncio.Queue()
    feed.subscribe(inbox.put)
    try:
        frame = await asyncio.wait_for(inbox.get(), 2)
        assert frame["directors"][0]["name"] == "app"
    finally:
        await feed.stop()


def test_csv_check_status_and_limits():
    view = overview.merge(snapshot(live_backend(1, "a", capacity=2), live_backend(2, "b", capacity=3, health="offline"),
                                   live_backend(3, "c", capacity=1, health="undefined")),
                          overview.Facts((), ({"id": 1, "last_check_ok": True, "last_check_status": 204,
                                               "last_check_duration": 0.0042},
                                              {"id": 2, "last_error": "unexpected status 503", "last_check_ok": False,
                                               "last_check_status": 503, "health_changed_at": AT_100, "downtime": 7.0},),
                                         0.0))
    rows = [line.split(",") for line in haproxy_csv.render(view, now=130.0).splitlines()[1:]]
    by_name = {row[1]: dict(zip(haproxy_csv.FIELDS, row)) for row in rows}
    assert (by_name["a"]["check_status"], by_name["a"]["check_code"], by_name["a"]["check_duration"]) == ("L7OK", "204", "4")
    assert (by_name["b"]["check_status"], by_name["b"]["check_code"]) == ("L7STS", "503")
    assert (by_name["b"]["lastchg"], by_name["b"]["downtime"]) == ("30", "37")  # 7 s before + 30 s offline now
    assert by_name["c"]["check_status"] == "INI" and by_name["c"]["status"] == "DOWN"
    assert by_name["BACKEND"]["slim"] == "6"  # every member limited: the sum
