"""Merging the live figures of `--workers` processes (balancer.worker_stats)."""
import json
import os
import subprocess
import sys
import time

from balancer import worker_stats
from balancer.worker_stats import Peers, merge_counts, merge_snapshots


def load(current, high, total):
    return {"current": current, "max": high, "total": total}


def snapshot(director_load, backend_load, responses_2xx, dropped=0):
    responses = {"failed": 0, "1xx": 0, "2xx": responses_2xx, "3xx": 0, "4xx": 0, "5xx": 0}
    return {"directors": [{
        "id": 1, "name": "app", "enabled": True, "load": director_load, "queued": load(0, 0, 0),
        "dropped": dropped, "responses": responses,
        "backends": [{"id": 7, "name": "b", "role": "active", "enabled": True, "health": "online",
                      "terminating": False, "capacity": 4, "load": backend_load, "failures": 1,
                      "responses": responses}],
    }]}


def test_counts_add_up_and_peaks_take_the_largest():
    own = {"load": load(2, 5, 100), "dropped": 1, "failures": 0}
    merged = merge_counts(own, [{"load": load(1, 9, 50), "dropped": 2, "failures": 3}])
    assert merged == {"load": load(3, 9, 150), "dropped": 3, "failures": 3}
    assert own["load"] == load(2, 5, 100)  # the worker's own figures are left alone


def test_request_figures_add_up_bucket_by_bucket():
    """proxy.request_metrics.Traffic figures: bytes, duration histograms by class (a class
    only one worker has seen included) and upstream histograms."""
    def traffic(counts, total, sent, classes=("2xx",)):
        histogram = {"counts": counts, "sum": total}
        return {"bytes": {"received": 1, "sent": sent}, "durations": {c: histogram for c in classes},
                "upstream": histogram}
    merged = merge_counts(traffic([1, 0, 2], 0.5, 10), [traffic([0, 3, 1], 0.25, 5, ("2xx", "5xx"))])
    assert merged["bytes"] == {"received": 2, "sent": 15}
    assert merged["durations"] == {"2xx": {"counts": [1, 3, 3], "sum": 0.75}, "5xx": {"counts": [0, 3, 1], "sum": 0.25}}
    assert merged["upstream"] == {"counts": [1, 3, 3], "sum": 0.75}


def test_settings_and_states_are_this_workers_own():
    own = {"enabled": True, "capacity": 4, "health": "online", "load": load(0, 0, 1)}
    other = {"enabled": False, "capacity": 99, "health": "offline", "load": load(0, 0, 1)}
    assert merge_counts(own, [other]) == {**own, "load": load(0, 0, 2)}


def test_snapshots_merge_by_director_and_backend_id():
    own = snapshot(load(1, 2, 10), load(1, 2, 10), 10)
    peers = Peers([{"worker": 1, "snapshot": snapshot(load(3, 4, 30), load(3, 4, 30), 30, dropped=5),
                    "health": {"7": {"checks": 12}}}])
    merged = merge_snapshots(own, peers)["directors"][0]
    assert merged["load"] == load(4, 4, 40) and merged["dropped"] == 5 and merged["responses"]["2xx"] == 40
    assert merged["backends"][0]["load"] == load(4, 4, 40) and merged["backends"][0]["failures"] == 2
    assert peers.health == {7: {"checks": 12}}
    assert merge_snapshots(own, Peers([])) is own


def test_peers_are_the_other_workers_fresh_files(tmp_path, monkeypatch):
    monkeypatch.setenv(worker_stats.DIRECTORY_ENV, str(tmp_path))
    monkeypatch.setenv(worker_stats.INDEX_ENV, "0")
    monkeypatch.setattr(worker_stats, "_cache", None)
    now = time.time()
    worker_stats.write_payload(tmp_path, 0, snapshot(load(0, 0, 1), load(0, 0, 1), 1), None)  # ourselves
    worker_stats.write_payload(tmp_path, 1, snapshot(load(0, 0, 2), load(0, 0, 2), 2), None, pid=os.getppid())
    stale = {"worker": 2, "pid": os.getppid(), "written_at": now - worker_stats.STALE_AFTER - 1, "snapshot": snapshot(load(0, 0, 3), load(0, 0, 3), 3)}
    (tmp_path / "2.json").write_text(json.dumps(stale))  # a worker that died
    (tmp_path / "3.json").write_text("{half a fi")  # never parsed: skipped
    found = worker_stats.peers(now)
    assert [p["worker"] for p in found.payloads] == [1]
    assert [b["load"]["total"] for b in found.backends[7]] == [2]


def test_outside_workers_there_are_no_peers(monkeypatch):
    monkeypatch.delenv(worker_stats.DIRECTORY_ENV, raising=False)
    assert worker_stats.peers().payloads == []


async def test_worker_0_removes_a_drained_backend_only_once_no_worker_has_a_request_on_it(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from balancer.dataplane_source import DatabaseConfigSource
    from proxy import watcher

    monkeypatch.setenv(worker_stats.DIRECTORY_ENV, str(tmp_path))
    monkeypatch.setenv(worker_stats.INDEX_ENV, "0")
    removed = []
    source = DatabaseConfigSource()
    monkeypatch.setattr(source, "remove_backend", removed.append)
    backend = SimpleNamespace(id=7, name="b", terminating=True, load=0, director=SimpleNamespace(name="app"))
    reaper = watcher.ConfigWatcher(SimpleNamespace(backends={7: backend}), source)

    def worker_1_has(in_flight: int):
        worker_stats.write_payload(tmp_path, 1, snapshot(load(0, 0, 0), load(in_flight, 1, 1), 0), None, pid=os.getppid())
        monkeypatch.setattr(worker_stats, "_cache", None)

    worker_1_has(1)
    await reaper._reap_drained()
    assert removed == []  # idle here, busy in worker 1
    worker_1_has(0)
    await reaper._reap_drained()
    assert removed == [7]

    monkeypatch.setenv(worker_stats.INDEX_ENV, "1")
    removed.clear()
    await reaper._reap_drained()
    assert removed == []  # other workers leave it to worker 0


def test_a_gone_workers_totals_are_kept_so_counters_never_go_down(tmp_path, monkeypatch):
    """A worker killed (or replaced by a reload) takes its counts with it unless they are
    folded into the retired totals, which readers add like one more worker."""
    monkeypatch.setenv(worker_stats.DIRECTORY_ENV, str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(dead.stdout)
    worker_stats.write_payload(tmp_path, 1, snapshot(load(3, 5, 40), load(3, 5, 40), 40, dropped=2), None, pid=gone)
    worker_stats.write_payload(tmp_path, 1, snapshot(load(1, 2, 10), load(1, 2, 10), 10), None, pid=os.getppid())

    def total_2xx() -> int:
        monkeypatch.setattr(worker_stats, "_cache", None)
        return sum(d["responses"]["2xx"] for p in worker_stats.peers().payloads for d in p["snapshot"]["directors"])

    assert total_2xx() == 50
    assert worker_stats.fold_gone(tmp_path) == 1
    assert worker_stats.fold_gone(tmp_path) == 0  # folded once only
    assert total_2xx() == 50  # the gone worker's 40 now come from the retired totals
    retired = [p for p in worker_stats.peers().payloads if p["worker"] == "retired"][0]["snapshot"]["directors"][0]
    assert retired["load"] == load(0, 5, 40) and retired["dropped"] == 2
    assert retired["backends"][0]["load"] == load(0, 5, 40)


def test_a_gone_health_monitors_check_counts_stay_in_the_totals(tmp_path, monkeypatch):
    """Worker 0's monitor replaced: its checks and duration histogram are folded into the
    retired totals, and the live monitor's figures are reported on top of them."""
    monkeypatch.setenv(worker_stats.DIRECTORY_ENV, str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old_monitor = {"7": {"checks": 30, "duration_buckets": [20, 10, 0], "duration_sum": 0.5, "last_ok": True}}
    worker_stats.write_payload(tmp_path, 0, snapshot(load(0, 1, 1), load(0, 1, 1), 1), old_monitor, pid=int(dead.stdout))
    assert worker_stats.fold_gone(tmp_path) == 1
    monkeypatch.setattr(worker_stats, "_cache", None)
    retired = worker_stats.peers().retired_health
    new_monitor = {7: {"checks": 2, "duration_buckets": [2, 0, 0], "duration_sum": 0.01, "last_ok": False}}
    reported = worker_stats.with_retired_checks(new_monitor, retired)[7]
    assert reported["checks"] == 32 and reported["duration_buckets"] == [22, 10, 0]
    assert abs(reported["duration_sum"] - 0.51) < 1e-9
    assert reported["last_ok"] is False  # the current facts stay the live monitor's
