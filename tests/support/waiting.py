"""Polling with deadlines instead of sleeps."""
import asyncio
import os
import socket
import time


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Call `predicate` until it returns a truthy value; return it. Fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


async def async_wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_open(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(host: str, port: int, timeout: float = 15.0):
    wait_for(lambda: port_open(host, port), timeout, what=f"{host}:{port} to accept connections")


# Ports handed to processes that bind them later come from below the kernel's
# ephemeral range (32768+ on Linux), so a socket bound to port 0 or an outgoing
# connection in the meantime can never take one first. A per-process cursor keeps
# one test session from handing out the same port twice.
_FIXED_PORTS = range(20000, 32000)
_cursor = [20000 + (os.getpid() * 97) % len(_FIXED_PORTS)]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now and the kernel will not assign on its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(len(_FIXED_PORTS)):
        port = _cursor[0]
        _cursor[0] = port + 1 if port + 1 < _FIXED_PORTS.stop else _FIXED_PORTS.start
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port on {host} in {_FIXED_PORTS}")


def ipv6_loopback() -> bool:
    """Whether this machine can bind [::1] (IPv6 tests need it)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False
