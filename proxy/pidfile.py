"""`<data dir>/runproxy.pid`: which process to signal for a reload (SPEC §11).

Written by the process an operator signals (the single runproxy, or the supervisor under
`--workers`), replaced atomically, and removed on exit only if it still names this process.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

PID_FILE = "runproxy.pid"


class PidFileError(Exception):
    """One line for the operator: no pid file, an unreadable one, or a dead process."""


def path_in(data_dir: Path) -> Path:
    return Path(data_dir) / PID_FILE


def write(path: Path, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    partial = path.with_name(f".{path.name}.{pid}.tmp")
    partial.write_text(f"{pid}\n")
    os.replace(partial, path)


def remove(path: Path, pid: int | None = None) -> None:
    """Remove the file if it names `pid` (default: this process); a successor's stays."""
    pid = os.getpid() if pid is None else pid
    with contextlib.suppress(OSError, PidFileError):
        if read(path) == pid:
            path.unlink()


def read(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise PidFileError(f"no pid file {path}: is runproxy running with this data directory?") from None
    except OSError as exc:
        raise PidFileError(f"cannot read pid file {path}: {exc.strerror}") from None
    if not text.isdigit() or int(text) <= 0:
        raise PidFileError(f"pid file {path} does not hold a process id: {text[:40]!r}")
    return int(text)


def running_pid(path: Path) -> int:
    """The live process the pid file names; PidFileError when there is none."""
    pid = read(path)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise PidFileError(f"pid file {path} names process {pid}, which is not running") from None
    except PermissionError:
        pass  # alive, but not ours: signalling it will say so
    return pid
