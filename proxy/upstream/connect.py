"""Opening one transport to a backend address (plain, UNIX or TLS), with errors mapped to the
upstream tree. A TLS handshake is part of the connect: its time counts against the connect
timeout and its failure (a certificate that does not verify) is a connect failure."""
from __future__ import annotations

import asyncio
import socket
from typing import Callable, TypeVar

from proxy.addresses import BackendAddress
from proxy.errors import ConnectError, ConnectTimeout
from proxy.upstream import tls

UNIX_RETRY_FIRST = 0.001  # seconds between connect attempts to a UNIX socket with a full backlog
UNIX_RETRY_MAX = 0.05


P = TypeVar("P", bound=asyncio.BaseProtocol)


async def open_connection(address: BackendAddress, protocol_factory: Callable[[], P], timeout: float) -> tuple[asyncio.BaseTransport, P]:
    """Connect over TCP (IP literal, or host name resolved now) or a UNIX socket.

    Raises ConnectTimeout after `timeout` seconds, ConnectError on any other failure.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if address.path is not None:
                sock = await _connect_unix(address.path)
                return await loop.create_unix_connection(protocol_factory, sock=sock)
            if address.tls is None:
                transport, protocol = await loop.create_connection(protocol_factory, address.host, address.port)
            else:
                # The handshake's own limit is set past ours, so a slow handshake is a
                # ConnectTimeout like a slow connect (asyncio would raise ConnectionAbortedError).
                transport, protocol = await loop.create_connection(
                    protocol_factory, address.host, address.port, ssl=_context(address),
                    server_hostname=tls.server_hostname(address), ssl_handshake_timeout=timeout + 1.0)
    except TimeoutError:
        raise ConnectTimeout(f"connect timeout after {timeout:g}s to {address.url}") from None
    except OSError as exc:
        raise ConnectError(_describe(exc, address)) from exc
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return transport, protocol


def _context(address: BackendAddress):
    try:
        return tls.client_context(address.tls)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConnectError(f"TLS: cannot use tls_ca_file {address.tls.ca_file}: {reason}") from None


async def _connect_unix(path: str) -> socket.socket:
    """A connected AF_UNIX socket. Linux answers EAGAIN when the listener's backlog is full
    and does not complete the connect in the background (asyncio would then report a bogus
    success), so retry with a short backoff until it succeeds or the caller's timeout hits."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    delay = UNIX_RETRY_FIRST
    try:
        while True:
            try:
                sock.connect(path)
                return sock
            except BlockingIOError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, UNIX_RETRY_MAX)
    except BaseException:
        sock.close()
        raise


def _describe(exc: OSError, address: BackendAddress) -> str:
    reason = tls.describe(exc) if address.tls is not None else None
    if reason is not None:
        return reason
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {address.host}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {address.url}"
    if isinstance(exc, FileNotFoundError):
        return f"no such socket {address.path}"
    if isinstance(exc, PermissionError) and address.path is not None:
        return f"permission denied on socket {address.path}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot connect to {address.url}: {reason}"
