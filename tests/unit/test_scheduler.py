"""Schedulers over a RolePool: rr, chance, least_load, exclusion, readiness bookkeeping."""
from proxy.scheduler import RolePool


class B:
    def __init__(self, name, capacity=0, load=0, online=True, enabled=True):
        self.name, self.capacity, self.load = name, capacity, load
        self.online, self.enabled, self.index = online, enabled, 0

    @property
    def available(self):
        return self.online and self.enabled

    def __repr__(self):
        return self.name


def names(pool, n, exclude=frozenset()):
    return [pool.choose(exclude).name for _ in range(n)]


def test_rr_rotates_over_ready_backends():
    pool = RolePool([B("a"), B("b"), B("c")], "rr")
    assert names(pool, 6) == ["a", "b", "c", "a", "b", "c"]


def test_rr_skips_unavailable_without_double_skip():
    # x0 incremented its index twice per failed probe and so skipped every other candidate.
    members = [B("a"), B("b", online=False), B("c"), B("d")]
    pool = RolePool(members, "rr")
    assert names(pool, 6) == ["a", "c", "d", "a", "c", "d"]


def test_rr_each_candidate_once_with_exclusion():
    a, b, c = B("a"), B("b"), B("c")
    pool = RolePool([a, b, c], "rr")
    tried = set()
    for _ in range(3):
        chosen = pool.choose(tried)
        assert chosen not in tried
        tried.add(chosen)
    assert pool.choose(tried) is None
    assert tried == {a, b, c}


def test_full_backend_leaves_ready_set_and_returns():
    a, b = B("a", capacity=1), B("b", capacity=1)
    pool = RolePool([a, b], "rr")
    a.load = 1
    pool.refresh(a, True)
    assert names(pool, 3) == ["b", "b", "b"]
    a.load = 0
    pool.refresh(a, True)
    assert pool.ready_count == 2


def test_availability_changes_counted():
    a, b = B("a"), B("b")
    pool = RolePool([a, b], "rr")
    assert pool.available_count == 2
    a.online = False
    pool.refresh(a, True)
    assert pool.available_count == 1 and pool.ready_count == 1
    a.online = True
    pool.refresh(a, False)
    assert pool.available_count == 2 and pool.ready_count == 2


def test_chance_fills_first_backend_before_next():
    a, b = B("a", capacity=2), B("b", capacity=2)
    pool = RolePool([a, b], "chance")
    order = []
    for _ in range(4):
        chosen = pool.choose()
        order.append(chosen.name)
        chosen.load += 1
        pool.refresh(chosen, True)
    assert order == ["a", "a", "b", "b"]
    assert pool.choose() is None


def test_least_load_prefers_most_free_slots_and_unlimited():
    a, b, c = B("a", capacity=4, load=3), B("b", capacity=10, load=2), B("c", capacity=5, load=0)
    pool = RolePool([a, b, c], "least_load")
    assert pool.choose().name == "b"  # 8 free
    unlimited = B("u", capacity=0, load=50)
    pool = RolePool([a, b, c, unlimited], "least_load")
    assert pool.choose().name == "u"
    assert pool.choose({unlimited}).name == "b"


def test_disabled_backend_never_chosen():
    pool = RolePool([B("a", enabled=False), B("b")], "chance")
    assert names(pool, 3) == ["b", "b", "b"]


class Counting(B):
    reads = 0

    @property
    def available(self):
        Counting.reads += 1
        return self.online and self.enabled


def test_offline_backends_are_not_looked_at_per_request():
    for scheduler in ("rr", "chance", "least_load"):
        members = [Counting(f"b{i}", capacity=4, online=(i % 100 == 0)) for i in range(1000)]
        pool = RolePool(members, scheduler)
        Counting.reads = 0
        for _ in range(50):
            chosen = pool.choose()
            assert chosen.online
        # only the chosen (online) members may be inspected, never the 990 offline ones
        assert Counting.reads <= 50, (scheduler, Counting.reads)


def test_least_load_follows_load_changes():
    a, b = B("a", capacity=3), B("b", capacity=3)
    pool = RolePool([a, b], "least_load")
    picks = []
    for _ in range(6):
        chosen = pool.choose()
        picks.append(chosen.name)
        was = chosen.available
        chosen.load += 1
        pool.refresh(chosen, was)
    assert sorted(picks) == ["a", "a", "a", "b", "b", "b"]
    assert picks[:2] in (["a", "b"], ["b", "a"])
    assert pool.choose() is None
