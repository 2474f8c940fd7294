"""Listening sockets made before any server runs: the `--workers` supervisor's.

A TCP listener gets one socket per worker, all bound to its port with SO_REUSEPORT, so the
kernel spreads new connections evenly over the workers. (With one shared socket, whichever
worker wakes first accepts a whole burst, and keep-alive clients stay on it for their
lifetime: `make bench` saw all 32 connections on one worker.) A dead worker's sockets stay
open in the supervisor and go to the worker that replaces it, as nginx does with
`reuseport`: the connections the kernel queues on them meanwhile wait (about a second and
the start-up) instead of being reset. A UNIX listener is one socket every worker accepts on.

UNIX socket files: a stale one left by a dead process is removed (only a socket nobody
accepts on; any other file, or a live socket, is a ListenError); new ones get mode 0o666.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import stat

from proxy.addresses import ListenAddress

BACKLOG = 1024
UNIX_SOCKET_MODE = 0o666


class ListenError(Exception):
    """A listener could not be bound; the message is one line naming address and cause."""


class ListenerSockets:
    """Every worker's listening sockets, by worker index and address.

    Binds all of them at once (ListenError, with nothing left open, when one fails).
    """

    def __init__(self, addresses: list[ListenAddress], workers: int):
        self.addresses = list(addresses)
        self._unix: dict[ListenAddress, socket.socket] = {}
        self._ports: dict[ListenAddress, int] = {}  # the bound port of each TCP listener (resolves port 0)
        self._workers: list[dict[ListenAddress, socket.socket]] = []
        self._retired: list[tuple[ListenAddress, socket.socket]] = []  # closed once old workers are gone
        self._undo: tuple | None = None  # what rebind() replaced, until close_retired()
        try:
            for _ in range(workers):
                self._workers.append(self._bind_set())
        except BaseException:
            self.close()
            raise

    def rebind(self, addresses: list[ListenAddress], workers: int) -> None:
        """A reload's listeners: sockets of addresses that stay are kept (so are their queued
        connections), new ones are bound, and those no longer wanted are retired: closed by
        `close_retired()` once the workers using them have stopped. ListenError, with
        nothing changed, when a new one cannot be bound."""
        before = (self.addresses, [dict(s) for s in self._workers], dict(self._unix), dict(self._ports))
        self.addresses = list(addresses)
        sets: list[dict[ListenAddress, socket.socket]] = []
        try:
            for index in range(workers):
                sets.append(self._bind_set(self._workers[index] if index < len(self._workers) else {}))
        except BaseException:
            self._undo = (before, sets, [])
            self.undo_rebind()
            raise
        in_use = {id(sock) for made in sets for sock in made.values()}
        retired = [(a, s) for old in self._workers for a, s in old.items() if a.path is None and id(s) not in in_use]
        retired += [(a, s) for a, s in self._unix.items() if a not in self.addresses]
        self._unix = {a: s for a, s in self._unix.items() if a in self.addresses}
        self._retired += retired
        self._undo = (before, sets, retired)
        self._workers = sets

    def undo_rebind(self) -> None:
        """Back to the listeners before the last rebind() (its new sockets are closed)."""
        if self._undo is None:
            return
        (addresses, workers, unix, ports), sets, retired = self._undo
        kept = {id(sock) for old in workers for sock in old.values()} | {id(s) for s in unix.values()}
        made = {(a, s) for new in sets for a, s in new.items()} | set(self._unix.items())
        for address, sock in made:
            if id(sock) not in kept:
                sock.close()
                if address.path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(address.path)
        self._retired = [item for item in self._retired if item not in retired]
        self.addresses, self._workers, self._unix, self._ports = addresses, workers, unix, ports
        self._undo = None

    def close_retired(self) -> None:
        retired, self._retired = self._retired, []
        self._undo = None
        for address, sock in retired:
            sock.close()
            if address.path is not None and address not in self.addresses:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address.path)

    def for_worker(self, index: int) -> dict[ListenAddress, socket.socket]:
        return self._workers[index]

    def close(self) -> None:
        self.close_retired()
        for sockets in self._workers:
            _close_tcp(sockets)
        self._workers.clear()
        for address, sock in self._unix.items():
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.path)
        self._unix.clear()

    def _bind_set(self, keep: dict[ListenAddress, socket.socket] | None = None) -> dict[ListenAddress, socket.socket]:
        """One worker's sockets for self.addresses, reusing those in `keep`."""
        made: dict[ListenAddress, socket.socket] = {}
        keep = keep or {}
        try:
            for address in self.addresses:
                if address.path is None and address in keep:
                    made[address] = keep[address]
                    continue
                if address.path is not None:
                    if address not in self._unix:
                        self._unix[address] = bind_listener(address)
                    made[address] = self._unix[address]
                    continue
                bound = dataclasses.replace(address, port=self._ports.get(address, address.port))
                made[address] = sock = bind_listener(bound, reuse_port=True)
                self._ports[address] = sock.getsockname()[1]
        except BaseException:
            _close_tcp({a: sock for a, sock in made.items() if keep.get(a) is not sock})
            raise
        return made


def ensure_not_served(addresses: list[ListenAddress], timeout: float = 0.5) -> None:
    """ListenError naming the first TCP address something already accepts connections on.

    SO_REUSEPORT lets a second process of the same user bind a port a running `--workers`
    supervisor holds, and the kernel would split traffic between the two: a connection
    attempt is the check that does not depend on how the other process bound its socket.
    """
    for address in addresses:
        if address.path is not None or not address.port:
            continue
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address.host, address.host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            try:
                probe.connect((host, address.port))
            except OSError:
                continue
        raise ListenError(f"cannot listen on {address}: address already in use (another process serves it: a running runproxy?)")


def _close_tcp(sockets: dict[ListenAddress, socket.socket]) -> None:
    for address, sock in sockets.items():
        if address.path is None:
            sock.close()


def bind_listener(address: ListenAddress, *, reuse_port: bool = False) -> socket.socket:
    """A listening, inheritable socket for `address`; ListenError names address and cause."""
    if address.path is not None:
        remove_stale_socket(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = address.path
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in address.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        target = (address.host, address.port)
    try:
        sock.bind(target)
        if address.path is not None:
            os.chmod(address.path, UNIX_SOCKET_MODE)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {address}: {describe_error(exc)}") from None
    sock.set_inheritable(True)
    return sock


def remove_stale_socket(address: ListenAddress) -> None:
    """Remove a socket file nobody accepts on; refuse any other existing file."""
    try:
        mode = os.lstat(address.path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on {address}: file exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(address.path)
    except OSError:
        os.unlink(address.path)
    else:
        raise ListenError(f"cannot listen on {address}: {os.strerror(errno.EADDRINUSE).lower()}")
    finally:
        probe.close()


def describe_error(error) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno).lower()
    return str(error)
