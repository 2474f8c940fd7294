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
        try:
            for _ in range(workers):
                self._workers.append(self._bind_set())
        except BaseException:
            self.close()
            raise

    def for_worker(self, index: int) -> dict[ListenAddress, socket.socket]:
        return self._workers[index]

    def close(self) -> None:
        for sockets in self._workers:
            _close_tcp(sockets)
        self._workers.clear()
        for address, sock in self._unix.items():
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.path)
        self._unix.clear()

    def _bind_set(self) -> dict[ListenAddress, socket.socket]:
        made: dict[ListenAddress, socket.socket] = {}
        try:
            for address in self.addresses:
                if address.path is not None:
                    if address not in self._unix:
                        self._unix[address] = bind_listener(address)
                    made[address] = self._unix[address]
                    continue
                bound = dataclasses.replace(address, port=self._ports.get(address, address.port))
                made[address] = sock = bind_listener(bound, reuse_port=True)
                self._ports[address] = sock.getsockname()[1]
        except BaseException:
            _close_tcp(made)
            raise
        return made


def _close_tcp(sockets: dict[ListenAddress, socket.socket]) -> None:
    for address, sock in sockets.items():
        if address.path is None:
            sock.close()


def bind_listener(address: ListenAddress, *, reuse_port: bool = False) -> socket.socket:
    """A listening, inheritable socket for `address`; ListenError names address and cause."""
    if address.path is not None:
        remove_stale_socket(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = address.path
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
