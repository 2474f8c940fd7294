"""Buckets as pure units: token arithmetic, the shaper's take / wait / hand-over rules, the
director's token-then-slot acquire, and the bucket rules of the control plane (SPEC §15)."""
import asyncio

import pytest

from balancer import bucket_rules
from balancer.config import ConfigError, parse_config
from proxy.addresses import BackendAddress
from proxy.buckets import UNLIMITED, Shaper, token_figures
from proxy.director import DirectorRuntime, Refused
from proxy.runtime import BackendRuntime, DirectorSettings

ADDRESS = BackendAddress("http", "127.0.0.1", 9)


def rows(**buckets):
    return [{"id": i + 1, "name": name, "parent": spec.get("parent", ""), "rate": spec["rate"],
             "ceil": spec.get("ceil", spec["rate"])} for i, (name, spec) in enumerate(buckets.items())]


def shaper(capacity=4, **buckets):
    s = Shaper(1, "app")
    s.rebuild(rows(**buckets))
    s.resize(capacity)
    return s


def test_token_figures_follow_x0s_example():
    figures = token_figures(10, rows(main={"rate": 0.5, "ceil": 0.7}, child={"parent": "main", "rate": 0.5}))
    assert figures == {"root": (10, 10), "main": (5, 7), "child": (2, 3)}


def test_shares_hold_and_a_bucket_borrows_up_to_its_ceiling():
    s = shaper(gold={"rate": 0.75, "ceil": 0.75}, bronze={"rate": 0.25, "ceil": 1.0})
    gold, bronze = s.by_name["gold"], s.by_name["bronze"]
    assert (gold.assured, gold.ceiling, bronze.assured, bronze.ceiling) == (3, 3, 1, 4)
    tokens = [s.take(bronze) for _ in range(4)]
    assert all(tokens) and s.take(bronze) is None and s.take(gold) is None  # root is full
    tokens[0].give_back()
    tokens[0].give_back()  # idempotent
    assert s.root.used == 3
    assert [s.take(gold) is not None, s.take(gold) is None] == [True, True]


async def test_a_freed_token_goes_to_the_bucket_below_its_assured_share_first():
    s = shaper(gold={"rate": 0.75}, bronze={"rate": 0.25, "ceil": 1.0})
    gold, bronze = s.by_name["gold"], s.by_name["bronze"]
    held = [s.take(bronze) for _ in range(4)]  # bronze borrowed everything while gold was idle
    bronze_waits = asyncio.ensure_future(s.wait(bronze, 5))
    gold_waits = asyncio.ensure_future(s.wait(gold, 5))
    await asyncio.sleep(0)
    held.pop().give_back()
    await asyncio.sleep(0)
    assert gold_waits.done() and not bronze_waits.done()  # bronze is over its share, gold below
    held.pop().give_back()
    await asyncio.sleep(0)
    assert bronze_waits.done()  # nobody below its share waits: bronze borrows the spare token
    assert (gold.used, bronze.used, s.root.used) == (1, 3, 4)


async def test_waiting_times_out_and_leaves_the_queue():
    s = shaper(capacity=1, gold={"rate": 1.0})
    gold = s.by_name["gold"]
    assert s.take(gold) is not None
    assert await s.wait(gold, 0.05) is None
    assert not gold.queue and s.waiting == 0


def test_capacity_follows_resize_and_unlimited_backends():
    s = shaper(capacity=8, gold={"rate": 0.5})
    assert s.by_name["gold"].ceiling == 4
    s.resize(2)
    assert s.by_name["gold"].ceiling == 1
    s.resize(UNLIMITED)
    assert s.take(s.by_name["gold"]) is not None


def test_unknown_bucket_is_root_and_logged_once_a_minute(caplog):
    s = shaper(gold={"rate": 0.5})
    with caplog.at_level("WARNING"):
        assert s.lookup("nope") is s.root and s.lookup("other") is s.root
    assert sum("no bucket" in r.message for r in caplog.records) == 1


def director_with(capacities, buckets, settings=None):
    director = DirectorRuntime(1, "app")
    members = []
    for i, capacity in enumerate(capacities):
        backend = BackendRuntime(i + 1, f"b{i}", director, ADDRESS, upstream=None)
        backend.capacity, backend.health, backend.position = capacity, "online", i
        members.append(backend)
    director.set_buckets(buckets)
    director.rebuild(settings or DirectorSettings(queue_timeout=5), members)
    return director, members


async def test_director_takes_a_token_before_a_slot_and_gives_both_back():
    director, members = director_with([2, 2], rows(gold={"rate": 0.75}, bronze={"rate": 0.25}))
    bronze = director.shaper.by_name["bronze"]
    assert director.shaper.capacity == 4
    slot = await director.acquire_in_bucket(bronze)
    waiting = asyncio.ensure_future(director.acquire_in_bucket(bronze))
    await asyncio.sleep(0)
    assert not waiting.done() and director.load.current == 1  # bronze has 1 token, in use
    slot.release()
    second = await waiting
    assert bronze.used == 1 and director.load.current == 1
    second.release()
    assert bronze.used == 0 and director.shaper.root.used == 0


async def test_bucket_queue_limit_and_timeout_refuse_and_count_dropped():
    director, _ = director_with([1], rows(gold={"rate": 1.0}), DirectorSettings(queue_limit=1, queue_timeout=0.05))
    gold = director.shaper.by_name["gold"]
    await director.acquire_in_bucket(gold)
    waiter = asyncio.ensure_future(director.acquire_in_bucket(gold))
    await asyncio.sleep(0)
    with pytest.raises(Refused, match="queue full"):
        await director.acquire_in_bucket(gold)
    with pytest.raises(Refused, match="queue timeout"):
        await waiter
    assert gold.dropped == 2


async def test_health_changes_resize_the_root():
    director, (a, b) = director_with([3, 1], rows(gold={"rate": 0.5, "ceil": 1.0}))
    assert director.shaper.capacity == 4
    director.set_health(a, "offline")
    assert director.shaper.capacity == 1 and director.shaper.by_name["gold"].ceiling == 1
    director.set_buckets([])
    assert director.shaper is None


def tree(**buckets):
    return {name: {"parent": spec.get("parent", ""), "rate": spec["rate"], "ceil": spec.get("ceil", spec["rate"])}
            for name, spec in buckets.items()}


def test_tree_rules_name_the_field():
    assert bucket_rules.tree_errors(tree(a={"rate": 0.6}, b={"rate": 0.3, "parent": "a"})) == {}
    errors = bucket_rules.tree_errors(tree(a={"rate": 0.6}, b={"rate": 0.5}))
    assert set(errors) == {"a", "b"} and "add up to 1.1" in errors["a"]["rate"][0]
    assert "at most ceil" in bucket_rules.tree_errors(tree(a={"rate": 0.6, "ceil": 0.5}))["a"]["rate"][0]
    assert "unknown bucket" in bucket_rules.tree_errors(tree(a={"rate": 0.1, "parent": "x"}))["a"]["parent"][0]
    cycle = bucket_rules.tree_errors(tree(a={"rate": 0.1, "parent": "b"}, b={"rate": 0.1, "parent": "a"}))
    assert "cycle" in cycle["a"]["parent"][0]


def test_field_rules():
    cleaned, errors = bucket_rules.clean_bucket({"name": "gold", "rate": 0.5}, creating=True)
    assert errors == {} and cleaned == {"name": "gold", "rate": 0.5, "ceil": 0.5, "parent": ""}
    _, errors = bucket_rules.clean_bucket({"name": "root", "rate": 1.5, "ceil": "1", "x": 1}, creating=True)
    assert set(errors) == {"name", "rate", "ceil", "x"}


def test_config_file_buckets_and_their_errors():
    config = parse_config("""
        [directors.app.backends]
        a = "http://127.0.0.1:1"
        [directors.app.buckets]
        gold = { rate = 0.6, ceil = 1.0 }
        silver = { rate = 0.5, parent = "gold" }
        [[routes]]
        pass = "app"
        bucket = "gold"
        bucket_from = "header:X-Tier"
    """)
    assert dict(config.directors["app"].buckets) == {"gold": {"parent": "", "rate": 0.6, "ceil": 1.0},
                                                     "silver": {"parent": "gold", "rate": 0.5, "ceil": 0.5}}
    assert (config.routes[0].bucket, config.routes[0].bucket_from) == ("gold", "header:X-Tier")
    with pytest.raises(ConfigError) as caught:
        parse_config("""
            [directors.app.buckets]
            gold = { rate = 1.5 }
            silver = { rate = 0.5, ceil = 0.4, colour = "grey" }
            [directors.dyn]
            dynamic = true
            buckets = { a = { rate = 1.0 } }
            [[routes]]
            http = "127.0.0.1:1"
            bucket = "gold"
        """)
    text = str(caught.value)
    assert "directors.app.buckets.gold.rate: must be a number from 0 to 1" in text
    assert "directors.app.buckets.silver.colour: unknown key" in text
    assert "directors.dyn.buckets:" in text
    assert "routes[0].bucket: only allowed together with pass" in text
    with pytest.raises(ConfigError, match=r"directors.app.buckets.b.rate: .*add up to 1.2"):
        parse_config("""
            [directors.app.buckets]
            a = { rate = 0.6 }
            b = { rate = 0.6 }
        """)
    with pytest.raises(ConfigError, match=r"directors.app.buckets.a.parent: unknown bucket 'nope'"):
        parse_config("""
            [directors.app.buckets]
            a = { rate = 0.6, parent = "nope" }
        """)


def test_status_overview_shows_each_buckets_tokens_and_queue():
    from balancer import overview

    director, _ = director_with([4], rows(gold={"rate": 0.75}, bronze={"rate": 0.25}))
    director.shaper.take(director.shaper.by_name["gold"])
    live = {"id": 1, "name": "app", "enabled": True, "responses": {}, "backends": [], **director.stats()}
    merged = overview.merge({"directors": [live]}, overview.Facts((), (), 0.0))
    assert merged["directors"][0]["buckets"] == [
        {"name": "root", "assured": 4, "ceiling": 4, "used": 1, "queued": 0, "dropped": 0},
        {"name": "gold", "assured": 3, "ceiling": 3, "used": 1, "queued": 0, "dropped": 0},
        {"name": "bronze", "assured": 1, "ceiling": 1, "used": 0, "queued": 0, "dropped": 0}]


async def test_a_waiter_that_goes_away_leaves_the_queue_and_gives_a_granted_token_back():
    s = shaper(capacity=1, gold={"rate": 1.0})
    gold = s.by_name["gold"]
    held = s.take(gold)
    gone = asyncio.ensure_future(s.wait(gold, 5))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert not gold.queue and s.waiting == 0
    granted_then_gone = asyncio.ensure_future(s.wait(gold, 5))
    await asyncio.sleep(0)
    held.give_back()  # granted to the waiter...
    granted_then_gone.cancel()  # ...whose client went away before it ran
    with pytest.raises(asyncio.CancelledError):
        await granted_then_gone
    assert gold.used == 0 and s.root.used == 0


def test_two_processes_share_the_tokens_of_the_node(tmp_path):
    from proxy import node_slots
    from proxy.node_slots import NodeSlots

    table = node_slots.create(tmp_path)
    first, second = Shaper(1, "app", NodeSlots(table, 0)), Shaper(1, "app", NodeSlots(table, 1))
    for s in (first, second):
        s.rebuild(rows(gold={"rate": 0.75}, bronze={"rate": 0.25}))
        s.resize(4)
    assert first.take(first.by_name["bronze"]) is not None
    assert second.take(second.by_name["bronze"]) is None  # bronze's one token is in use in the node
    tokens = [second.take(second.by_name["gold"]), first.take(first.by_name["gold"]), second.take(second.by_name["gold"])]
    assert all(tokens) and first.take(first.by_name["gold"]) is None
    tokens[1].give_back()
    assert second.take(second.by_name["gold"]) is not None
    assert node_slots.BUCKET_KEYS > 2**40 and node_slots.bucket_key(5) != node_slots.root_key(5)


async def test_a_request_routed_to_a_bucket_removed_since_uses_root():
    director, _ = director_with([2], rows(gold={"rate": 0.5}, tin={"rate": 0.5}))
    tin = director.shaper.by_name["tin"]
    director.set_buckets(rows(gold={"rate": 0.5}))
    slot = await director.acquire_in_bucket(tin)
    assert slot.token.path == (director.shaper.root,)
    slot.release()
