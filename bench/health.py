"""Health at scale (SPEC §14): 1,000 backends in one director, interval 2 s, half refusing.

Run: `.venv/bin/python bench/health.py [--backends 1000] [--steady 20]`. Needs PostgreSQL
(postgres@127.0.0.1:5432, a temporary database is created and dropped) and Redis
(REDIS_URL or redis://127.0.0.1:6379/0), as a cluster would.

- the monitor is `manage.py healthworker` (its own process, so its CPU time is its own);
- the backends are `bench/many_backends.py` processes: one for the first half (answering),
  one for the second half started at "recovery" and stopped at "outage" (closed ports
  refuse connections);
- a data plane in this process (DataPlane + ConfigWatcher + HealthFollower, as in a
  runproxy without monitor) follows the transitions; it counts full reloads (apply_rows)
  and, per transition, the time from the stored `health_changed_at` to the state applied.

Printed: monitor CPU % of one core in the steady state and over the whole run, checks per
second, config version bumps and full reloads caused by health, propagation p50/p99/max.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.shared_services import postgres_database  # noqa: E402

INTERVAL = 2.0
TICKS = os.sysconf("SC_CLK_TCK")


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def start_backends(ports: list[int]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "many_backends.py"), *map(str, ports)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "listening"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


def manage(env: dict, *args) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True,
                          capture_output=True, text=True, timeout=600).stdout


CREATE = """
from balancer import services
from balancer.models import Backend
director = services.create_director("bench", {}, actor="bench")
rows = [Backend(director=director, name=f"b{i}", url=f"http://127.0.0.1:{port}", health_check_interval=%(interval)r,
                position=i) for i, port in enumerate(%(ports)r)]
Backend.objects.bulk_create(rows)
services.update_director(director, {"retry_after": 11}, actor="bench")  # one version bump for the lot
"""


class Observer:
    """A data plane following health like a runproxy without monitor."""

    def __init__(self, rows):
        from channels.layers import get_channel_layer

        from balancer.dataplane_source import DatabaseConfigSource
        from proxy.health_follow import HealthFollower
        from proxy.state import DataPlane
        from proxy.watcher import ConfigWatcher

        self.plane = DataPlane()
        self.plane.apply_rows(*rows)
        self.reloads = 0
        self.delays: list[float] = []
        apply_rows = self.plane.apply_rows

        def counted(*args):
            self.reloads += 1
            apply_rows(*args)

        self.plane.apply_rows = counted
        apply_health = self.plane.apply_health

        def timed(backend_id, state, error="", changed_at=None, **kwargs):
            backend = self.plane.backends.get(backend_id)
            before = backend.health if backend else None
            apply_health(backend_id, state, error, changed_at, **kwargs)
            if backend is not None and backend.health != before and changed_at is not None:
                self.delays.append((datetime.now(timezone.utc) - changed_at).total_seconds())

        self.plane.apply_health = timed
        self.layer = get_channel_layer()
        source = DatabaseConfigSource()
        self.watcher = ConfigWatcher(self.plane, source, channel_layer=self.layer)
        self.follower = HealthFollower(self.plane, read=source.read_health)

    async def start(self):
        await self.watcher.start()
        await self.follower.start()

    async def stop(self):
        await self.follower.stop()
        await self.watcher.stop()

    def count(self, state: str) -> int:
        return sum(1 for b in self.plane.backends.values() if b.health == state)

    async def wait(self, state: str, count: int, timeout: float) -> float:
        began = time.monotonic()
        while self.count(state) < count:
            if time.monotonic() - began > timeout:
                raise SystemExit(f"timed out: {self.count(state)} of {count} backends {state}")
            await asyncio.sleep(0.05)
        return time.monotonic() - began


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def describe(name: str, delays: list[float]) -> str:
    return (f"{name}: {len(delays)} transitions applied, stamp -> live p50 {percentile(delays, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays, default=0) * 1000:.0f} ms")


async def run(args, env: dict) -> None:
    from asgiref.sync import sync_to_async

    from balancer.services import current_version

    half = args.backends // 2
    from balancer.dataplane_source import DatabaseConfigSource

    observer = Observer(await asyncio.to_thread(DatabaseConfigSource().read_rows))
    await observer.start()
    version = await sync_to_async(current_version)()
    monitor = subprocess.Popen([sys.executable, "manage.py", "healthworker"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    began, cpu0 = time.monotonic(), 0.0
    try:
        settle = await observer.wait("online", half, 60)
        await observer.wait("offline", args.backends - half, 60)
        print(f"settled: {half} online, {args.backends - half} offline after {settle:.1f} s")
        observer.delays.clear()
        cpu_start, steady_start = cpu_seconds(monitor.pid), time.monotonic()
        profiler = None
        if args.profile:  # py-spy (pip install py-spy) samples the monitor during the window
            profiler = subprocess.Popen([args.py_spy, "record", "-p", str(monitor.pid), "-d", str(int(args.steady)),
                                         "-f", "raw", "-o", args.profile], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        await asyncio.sleep(args.steady)  # a measurement window
        if profiler is not None:
            profiler.wait(30)
        steady = time.monotonic() - steady_start
        steady_cpu = cpu_seconds(monitor.pid) - cpu_start
        print(f"steady state ({steady:.0f} s, {half} answering, {args.backends - half} refusing): "
              f"monitor CPU {100 * steady_cpu / steady:.1f} % of one core "
              f"({args.backends / INTERVAL:.0f} checks/s expected)")

        recovering = start_backends(args.ports[half:])
        took = await observer.wait("online", args.backends, 60)
        print(f"recovery: all {args.backends} online here {took:.1f} s after the ports opened "
              f"(success threshold 2 x interval {INTERVAL:g} s)")
        print(describe("recovery", observer.delays))
        observer.delays.clear()
        stop(recovering)
        took = await observer.wait("offline", args.backends - half, 60)
        print(f"outage: {args.backends - half} offline here {took:.1f} s after the ports closed")
        print(describe("outage", observer.delays))
        await asyncio.sleep(2)  # let late pushes and polls arrive
        total = time.monotonic() - began
        total_cpu = cpu_seconds(monitor.pid) - cpu0
        bumps = await sync_to_async(current_version)() - version
        print(f"whole run ({total:.0f} s): monitor CPU {100 * total_cpu / total:.1f} % of one core; "
              f"config version bumps: {bumps}; full reloads (apply_rows) here: {observer.reloads}")
    finally:
        monitor.terminate()
        monitor.wait(10)
        await observer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=int, default=1000)
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady state measured")
    parser.add_argument("--profile", metavar="FILE", help="py-spy the monitor in the steady state (raw stacks)")
    args = parser.parse_args()
    args.py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if args.profile and args.py_spy is None:
        parser.error("--profile needs py-spy on PATH or beside this Python (pip install py-spy)")
    args.ports = free_ports(args.backends)
    redis = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    with postgres_database() as database:
        env = {**os.environ, "DATABASE_URL": database, "REDIS_URL": redis, "DJANGO_SETTINGS_MODULE": "director_site.settings",
               "DIRECTOR_DATA_DIR": str(Path(os.environ.get("TMPDIR", "/tmp")) / "director-bench-health")}
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "shell", "--no-imports", "-c", CREATE % {"interval": INTERVAL, "ports": args.ports})
        os.environ.update(env)
        import django

        django.setup()
        answering = start_backends(args.ports[: args.backends // 2])
        try:
            asyncio.run(run(args, env))
        finally:
            stop(answering)
            from django.db import connections

            connections.close_all()


if __name__ == "__main__":
    main()
