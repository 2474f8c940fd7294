"""A Python start-up shim that takes one internal away from daphne or Twisted, as an
upgrade might, so a test can see Director refuse to start (proxy.twisted_compat)."""
from __future__ import annotations

import os
from pathlib import Path


def without(directory: Path, module: str, owner: str, name: str) -> dict:
    """Environment variables making every Python process started with them lose
    `module.owner.name` before anything else runs (a `sitecustomize` on PYTHONPATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        f"import {module}\ndelattr({module}.{owner}, {name!r})\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))}
