"""Cache figures across `--workers` (balancer.worker_stats): live workers' add up, and a gone
worker leaves its counters in the totals but not its objects."""
from __future__ import annotations

from balancer import worker_stats

ZERO = {"current": 0, "max": 0, "total": 0}


def director(**cache) -> dict:
    figures = {"objects": 0, "bytes": 0, "hits": 0, "misses": 0, "shadow": 0, **cache}
    return {"id": 1, "name": "app", "load": dict(ZERO), "queued": dict(ZERO), "dropped": 0, "cache": figures,
            "backends": []}


def test_workers_caches_add_up():
    merged = worker_stats.merge_counts(director(objects=2, bytes=100, hits=5, misses=2, shadow=1),
                                       [director(objects=1, bytes=50, hits=1, misses=1)])
    assert merged["cache"] == {"objects": 3, "bytes": 150, "hits": 6, "misses": 3, "shadow": 1}


def test_a_gone_workers_counters_stay_but_its_objects_do_not():
    retired = worker_stats.retire_snapshot({"directors": []},
                                           {"directors": [director(objects=4, bytes=400, hits=7, misses=3, shadow=2)]})
    assert retired["directors"][0]["cache"] == {"objects": 0, "bytes": 0, "hits": 7, "misses": 3, "shadow": 2}


def test_the_status_page_and_metrics_see_the_cache_of_each_director():
    from balancer import metrics, overview

    live = {**director(objects=2, bytes=300, hits=9, misses=4, shadow=1), "enabled": True, "responses": {}}
    facts = overview.Facts(({"id": 1, "name": "app", "enabled": True, "dynamic": False},), (), 0.0)
    view = overview.merge({"directors": [live]}, facts)
    assert view["directors"][0]["cache"] == {"objects": 2, "bytes": 300, "hits": 9, "misses": 4, "shadow": 1}
    assert overview.merge(None, facts)["directors"][0]["cache"]["hits"] == 0  # no data plane: zeros
    text = metrics.exposition(view).decode()
    for line in ('director_cache_objects{director="app"} 2.0', 'director_cache_bytes{director="app"} 300.0',
                 'director_cache_hits_total{director="app"} 9.0', 'director_cache_misses_total{director="app"} 4.0',
                 'director_cache_shadow_total{director="app"} 1.0'):
        assert line in text.splitlines()
