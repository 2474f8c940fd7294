"""Director's version, as `manage.py runproxy --version` prints it (with what it runs on)."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

VERSION = "1.0"
RUNS_ON = ("Django", "daphne", "Twisted")


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def describe() -> str:
    """`Director 1.0 (Python 3.11.9, Django 5.2.19, daphne 4.2.3, Twisted 26.10.0)`."""
    runs_on = ", ".join(f"{name} {_installed(name)}" for name in RUNS_ON)
    return f"Director {VERSION} (Python {platform.python_version()}, {runs_on})"
