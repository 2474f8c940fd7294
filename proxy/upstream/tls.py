"""TLS toward https backends (SPEC §12): client contexts, the name to present, error reasons.

One `ssl.SSLContext` per distinct (verify, CA file) is built on first use and shared by every
connection and backend that needs it: building one reads the CA store, which costs far more
than a handshake. A CA file is keyed with its modification time too, so replacing its content
takes effect on the next new connection without a restart. Plain backends never get here.
"""
from __future__ import annotations

import functools
import os
import ssl
import stat

from proxy.addresses import BackendAddress, BackendTLS

CONTEXT_CACHE = 64  # distinct (verify, CA file, mtime) contexts kept
MAX_CA_FILE = 16 * 2**20  # bytes; the whole Mozilla bundle is about 0.2 MiB


def client_context(tls: BackendTLS) -> ssl.SSLContext:
    """The shared context for these settings. Raises OSError / ssl.SSLError when the CA file
    cannot be read or holds no certificate."""
    mtime = os.stat(tls.ca_file).st_mtime_ns if tls.ca_file else 0
    return _context(tls.verify, tls.ca_file, mtime)


@functools.lru_cache(maxsize=CONTEXT_CACHE)
def _context(verify: bool, ca_file: str, _mtime: int) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def server_hostname(address: BackendAddress) -> str:
    """The name sent as SNI and checked against the certificate."""
    return address.tls.server_name or address.host


def load_ca_file(path: str) -> None:
    """Check that `path` is a readable PEM file of CA certificates (ValueError otherwise).
    Only regular files of at most MAX_CA_FILE bytes are read: /dev/zero or a FIFO would never end."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path!r} is not a regular file")
        if info.st_size > MAX_CA_FILE:
            raise ValueError(f"{path!r} is larger than {MAX_CA_FILE // 2**20} MiB")
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=path)
    except FileNotFoundError:
        raise ValueError(f"{path!r}: no such file") from None
    except PermissionError:
        raise ValueError(f"{path!r}: permission denied") from None
    except ssl.SSLError:
        raise ValueError(f"{path!r} holds no PEM CA certificate") from None
    except OSError as exc:
        raise ValueError(f"{path!r}: {exc.strerror or exc}") from None


def describe(exc: BaseException) -> str | None:
    """A one-line reason for a TLS failure ("TLS: certificate verify failed: ..."), or None
    when `exc` is not one."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        return f"TLS: handshake failed: {str(reason).lower().replace('_', ' ')}"
    return None
