"""`runproxy --workers N`: one supervisor process, N worker processes sharing the listeners.

The supervisor binds every listener (`proxy.listeners.ListenerSockets`: a SO_REUSEPORT
socket per worker for TCP) and starts N copies of its own command line with their sockets
inherited, file descriptors and addresses in DIRECTOR_INHERITED_SOCKETS and the worker's
number in DIRECTOR_WORKER_INDEX. The kernel spreads connections over the workers' sockets;
a worker started again gets the sockets of the one it replaces. Worker 0 runs the health
monitor; the workers share health reports and config pushes through Redis and publish their
live figures for each other (`balancer.worker_stats`).

A worker that exits unexpectedly is started again after RESTART_DELAY; one that fails
FAILING_STARTS times in a row within SHORT_LIFE seconds of its start stops the whole group
(exit 1). SIGTERM or SIGINT stops the workers (SIGTERM, then SIGKILL after STOP_TIMEOUT)
and the supervisor exits 0 when they did.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from proxy.addresses import ListenAddress, parse_listen
from proxy.listeners import ListenerSockets

log = logging.getLogger("director.workers")

SOCKETS_ENV = "DIRECTOR_INHERITED_SOCKETS"
INDEX_ENV = "DIRECTOR_WORKER_INDEX"
DIRECTORY_ENV = "DIRECTOR_WORKERS_DIR"
RESTART_DELAY = 1.0
SHORT_LIFE = 5.0
FAILING_STARTS = 3
STOP_TIMEOUT = 30.0
TICK = 0.2


def inherited_sockets() -> dict[ListenAddress, socket.socket]:
    """In a worker: the listening sockets its supervisor made, by address."""
    value = os.environ.get(SOCKETS_ENV)
    if not value:
        return {}
    return {parse_listen(address): socket.socket(fileno=fd) for fd, address in json.loads(value)}


async def stop_with_supervisor(stop, interval: float = 1.0) -> None:
    """In a worker: call `stop()` once the supervisor is gone (killed without stopping us)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(interval)
    log.warning("runproxy: the supervisor (pid %d) is gone; stopping", parent)
    stop()


class _Worker:
    def __init__(self, index: int):
        self.index = index
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.short_lives = 0
        self.restart_at: float | None = None


class Supervisor:
    def __init__(self, command: list[str], count: int, listeners: ListenerSockets, workers_dir: Path):
        self.command = command
        self.listeners = listeners
        self.workers_dir = workers_dir
        self.workers = [_Worker(i) for i in range(count)]
        self._stopping = False
        self._failed: str | None = None

    def run(self) -> int:
        """Start the workers and watch them until a signal or a failing worker; the exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        try:
            for worker in self.workers:
                self._start(worker)
            log.info("runproxy: %d workers started (pids %s)", len(self.workers),
                     ", ".join(str(w.process.pid) for w in self.workers))
            while not self._stopping:
                self._watch()
                time.sleep(TICK)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(self.workers_dir, ignore_errors=True)
        if self._failed:
            log.error("runproxy: %s; stopping", self._failed)
            return 1
        return 0

    def _on_signal(self, signum, frame) -> None:
        self._stopping = True

    def _start(self, worker: _Worker) -> None:
        sockets = self.listeners.for_worker(worker.index)
        env = dict(os.environ)
        env[INDEX_ENV] = str(worker.index)
        env[DIRECTORY_ENV] = str(self.workers_dir)
        env[SOCKETS_ENV] = json.dumps([[sock.fileno(), str(address)] for address, sock in sockets.items()])
        worker.process = subprocess.Popen(self.command, env=env, pass_fds=[s.fileno() for s in sockets.values()])
        worker.started = time.monotonic()
        worker.restart_at = None

    def _watch(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None:
                if now >= worker.restart_at:
                    self._start(worker)
                    log.info("runproxy: worker %d started again (pid %d)", worker.index, worker.process.pid)
                continue
            status = worker.process.poll()
            if status is None:
                continue
            lived = now - worker.started
            worker.short_lives = worker.short_lives + 1 if lived < SHORT_LIFE else 0
            if worker.short_lives >= FAILING_STARTS:
                self._failed = f"worker {worker.index} exited {FAILING_STARTS} times within {SHORT_LIFE:g} s of starting (status {status})"
                self._stopping = True
                return
            log.warning("runproxy: worker %d (pid %d) exited with status %s after %.1f s; starting it again",
                        worker.index, worker.process.pid, status, lived)
            worker.restart_at = now + RESTART_DELAY

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("runproxy: worker pid %d did not stop in %g s; killing it", process.pid, STOP_TIMEOUT)
                process.kill()
                process.wait()
