"""`runproxy --workers N`: one supervisor process, N worker processes sharing the listeners.

The supervisor binds every listener (`proxy.listeners.ListenerSockets`: a SO_REUSEPORT
socket per worker for TCP) and starts N copies of its own command line with their sockets
inherited, file descriptors and addresses in DIRECTOR_INHERITED_SOCKETS and the worker's
number in DIRECTOR_WORKER_INDEX. The kernel spreads connections over the workers' sockets;
a worker started again gets the sockets of the one it replaces. Worker 0 runs the health
monitor; the workers share health reports and config pushes through Redis and publish their
live figures for each other (`balancer.worker_stats`).

A worker that exits unexpectedly is started again, after RESTART_DELAY, doubled for each
start in a row that did not live SHORT_LIFE seconds (up to MAX_RESTART_DELAY): a worker that
cannot start (database away, say) never takes its siblings down with it.

SIGUSR1 is passed on to every worker (each reopens its access log: logrotate).

SIGHUP reloads (SPEC §11): the supervisor reads and validates the config file (a broken file
changes nothing), binds any new listener, stores the file in the database, then replaces the
workers one at a time. A new worker gets the same sockets as the one it replaces and says
when it serves (a byte on the pipe in DIRECTOR_READY_FD); only then is the old one told to
stop (SIGTERM: it stops accepting and finishes its requests), so a listener never goes
unserved. SIGTERM or SIGINT stops the workers the same way and the supervisor exits 0 when
they did (SIGKILL after the shutdown timeout).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from proxy import node_slots
from proxy.addresses import ListenAddress, parse_listen
from proxy.listeners import ListenError, ListenerSockets, ensure_not_served

log = logging.getLogger("director.workers")

SOCKETS_ENV = "DIRECTOR_INHERITED_SOCKETS"
INDEX_ENV = "DIRECTOR_WORKER_INDEX"
DIRECTORY_ENV = "DIRECTOR_WORKERS_DIR"
READY_ENV = "DIRECTOR_READY_FD"
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
SHORT_LIFE = 5.0
READY_TIMEOUT = 60.0  # a new worker of a reload must serve within this, else the reload stops
KILL_MARGIN = 5.0  # beyond the shutdown timeout, before a stopping worker is killed
TICK = 0.2
STORE_RETRY = 2.0  # seconds between attempts to store a file the database was away for


def workers_directory() -> Path | None:
    """In a worker: the directory its supervisor shares with the workers."""
    value = os.environ.get(DIRECTORY_ENV)
    return Path(value) if value else None


def inherited_sockets() -> dict[ListenAddress, socket.socket]:
    """In a worker: the listening sockets its supervisor made, by address."""
    value = os.environ.get(SOCKETS_ENV)
    if not value:
        return {}
    return {parse_listen(address): socket.socket(fileno=fd) for fd, address in json.loads(value)}


def report_ready() -> None:
    """In a worker: tell the supervisor this process serves (once; no-op elsewhere)."""
    value = os.environ.pop(READY_ENV, None)
    if value and value.isdigit():
        try:
            os.write(int(value), b"1")
            os.close(int(value))
        except OSError as exc:
            log.warning("cannot tell the supervisor this worker is ready: %s", exc)


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
    def __init__(self, command: list[str], count: int, listeners: ListenerSockets, workers_dir: Path, *,
                 reader=None, storer=None, shutdown_timeout: float = 30.0, unstored=None):
        """`reader()` -> (config, settings) re-reads the config file (raises on a broken one);
        `storer(config)` stores it in the database. Without them SIGHUP is refused.
        `unstored`: a config the database was away for at start, stored once it answers."""
        self.command = command
        self.listeners = listeners
        self.workers_dir = workers_dir
        self.workers = [_Worker(i) for i in range(count)]
        self.reader = reader
        self.storer = storer
        self.shutdown_timeout = shutdown_timeout
        self.stopping: list[subprocess.Popen] = []  # old workers finishing their requests
        self._stopping = False
        self._reload_wanted = False
        self.unstored = unstored
        self._store_at = 0.0
        self.slots: node_slots.NodeSlots | None = None  # the node-wide limits table
        self._columns: dict[int, int] = {}  # pid -> its column in the table

    def run(self) -> int:
        """Start the workers and watch them until SIGTERM/SIGINT; the exit code."""
        handlers = {signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop, signal.SIGHUP: self._on_reload,
                    signal.SIGUSR1: self._on_reopen}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        self.slots = node_slots.NodeSlots(node_slots.create(self.workers_dir), 0)
        try:
            for worker in self.workers:
                self._start(worker)
            log.info("runproxy: %d workers started (pids %s)", len(self.workers),
                     ", ".join(str(w.process.pid) for w in self.workers))
            while not self._stopping:
                if self._reload_wanted:
                    self._reload_wanted = False
                    self.reload()
                self._watch()
                self._store_unstored()
                time.sleep(TICK)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.slots is not None:
                self.slots.close()
            shutil.rmtree(self.workers_dir, ignore_errors=True)
        return 0

    def _on_stop(self, signum, frame) -> None:
        self._stopping = True

    def _on_reload(self, signum, frame) -> None:
        self._reload_wanted = True

    def _on_reopen(self, signum, frame) -> None:
        """SIGUSR1 (logrotate): every worker reopens its access log file."""
        for process in [w.process for w in self.workers] + self.stopping:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGUSR1)

    # -- starting and watching ---------------------------------------------------------

    def _spawn(self, index: int, ready_fd: int | None = None) -> subprocess.Popen:
        sockets = self.listeners.for_worker(index)
        env = dict(os.environ)
        env[INDEX_ENV] = str(index)
        env[DIRECTORY_ENV] = str(self.workers_dir)
        env[SOCKETS_ENV] = json.dumps([[sock.fileno(), str(address)] for address, sock in sockets.items()])
        fds = [s.fileno() for s in sockets.values()]
        if ready_fd is not None:
            env[READY_ENV] = str(ready_fd)
            fds.append(ready_fd)
        column = min(set(range(node_slots.COLUMNS)) - set(self._columns.values()))
        env[node_slots.COLUMN_ENV] = str(column)
        process = subprocess.Popen(self.command, env=env, pass_fds=fds)
        self._columns[process.pid] = column
        return process

    def _gone(self, process: subprocess.Popen) -> None:
        """A worker process has exited: what it held in the node's table is free."""
        column = self._columns.pop(process.pid, None)
        if column is not None and self.slots is not None:
            self.slots.clear_column(column)

    def _start(self, worker: _Worker) -> None:
        worker.process = self._spawn(worker.index)
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
            self._gone(worker.process)
            lived = now - worker.started
            worker.short_lives = worker.short_lives + 1 if lived < SHORT_LIFE else 0
            delay = min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** max(0, worker.short_lives - 1))
            log.warning("runproxy: worker %d (pid %d) exited with status %s after %.1f s; starting it again in %g s",
                        worker.index, worker.process.pid, status, lived, delay)
            worker.restart_at = now + delay
        self._reap_stopping()

    def _reap_stopping(self) -> None:
        for process in [p for p in self.stopping if p.poll() is not None]:
            self.stopping.remove(process)
            self._gone(process)
            log.info("runproxy: old worker pid %d finished its requests and exited", process.pid)
        if not self.stopping:
            self.listeners.close_retired()

    def _store_unstored(self) -> None:
        """Started while the database was away: store the file once it answers."""
        if self.unstored is None or time.monotonic() < self._store_at:
            return
        try:
            self.storer(self.unstored)
        except Exception:  # noqa: BLE001 - still away: try again later
            self._store_at = time.monotonic() + STORE_RETRY
            return
        log.info("runproxy: database reachable again; the config file is stored")
        self.unstored = None

    # -- reloading ---------------------------------------------------------------------

    def reload(self) -> bool:
        """SIGHUP: re-read the file, store it, replace the workers one at a time."""
        if self.reader is None:
            log.error("runproxy: reload is not available in this supervisor")
            return False
        log.info("runproxy: reload: reading the config file")
        try:
            config, settings = self.reader()
        except Exception as exc:  # noqa: BLE001 - ReloadError lists every problem
            for line in exc.lines() if hasattr(exc, "lines") else [str(exc)]:
                log.error("runproxy: reload: %s", line)
            log.error("runproxy: reload: nothing changed; the running configuration stays")
            return False
        addresses = [*settings.listen, settings.admin_listen]
        try:
            ensure_not_served([a for a in addresses if a not in self.listeners.addresses])
            self.listeners.rebind(addresses, settings.workers)
        except ListenError as exc:
            log.error("runproxy: reload: %s; nothing changed", exc)
            return False
        try:
            self.storer(config)
        except Exception as exc:  # noqa: BLE001 - database away: the running workers stay as they are
            self.listeners.undo_rebind()
            log.error("runproxy: reload: cannot store the configuration (%s); nothing changed", exc)
            return False
        self.shutdown_timeout = settings.shutdown_timeout
        replaced = self._replace_workers(settings.workers)
        log.info("runproxy: reload: %s", "applied; every worker replaced" if replaced else
                 "stopped part way: the workers not yet replaced keep the previous configuration")
        return replaced

    def _replace_workers(self, count: int) -> bool:
        for index in range(count):
            old = self.workers[index] if index < len(self.workers) else None
            process = self._start_ready(index)
            if process is None:
                return False
            if old is None:
                self.workers.append(_Worker(index))
            elif old.process is not None and old.process.poll() is None:
                self._retire(old.process)
            worker = self.workers[index]
            worker.process, worker.started, worker.restart_at, worker.short_lives = process, time.monotonic(), None, 0
        for worker in self.workers[count:]:
            if worker.process is not None and worker.process.poll() is None:
                self._retire(worker.process)
        del self.workers[count:]
        return True

    def _start_ready(self, index: int) -> subprocess.Popen | None:
        """A new worker for `index`, once it serves; None (and it is stopped) if it does not."""
        read_end, write_end = os.pipe()
        try:
            process = self._spawn(index, ready_fd=write_end)
        finally:
            os.close(write_end)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline and not self._stopping:
                readable, _, _ = select.select([read_end], [], [], TICK)
                if readable:
                    if os.read(read_end, 1):
                        log.info("runproxy: reload: worker %d replaced by pid %d", index, process.pid)
                        return process
                    break  # EOF: the new worker exited before it served
                self._watch()
        finally:
            os.close(read_end)
        log.error("runproxy: reload: new worker %d (pid %d) did not start serving%s", index, process.pid,
                  f" (exit status {process.poll()})" if process.poll() is not None else "")
        self._retire(process)
        return None

    def _retire(self, process: subprocess.Popen) -> None:
        """Tell a worker to stop accepting and finish its requests; reaped by _watch()."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            self.stopping.append(process)

    # -- stopping ----------------------------------------------------------------------

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        running += self.stopping
        deadline = time.monotonic() + self.shutdown_timeout + KILL_MARGIN
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("runproxy: worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        self.stopping.clear()
