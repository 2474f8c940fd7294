"""`manage.py`, plus a probe of the garbage collector: run as `python -m tests.support.gc_probe
runproxy ...`. On SIGUSR2 the process runs a full collection and appends the number of
unreachable objects it found (cyclic garbage made since the last one), the number of frozen
objects and the generation-0 threshold, as one line to `$DIRECTOR_DATA_DIR/gc-probe.txt`."""
from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path

FILE_NAME = "gc-probe.txt"


def _collect(signum, frame) -> None:
    found = gc.collect()
    with open(Path(os.environ["DIRECTOR_DATA_DIR"]) / FILE_NAME, "a") as out:
        out.write(f"{found} {gc.get_freeze_count()} {gc.get_threshold()[0]}\n")


def main() -> None:
    signal.signal(signal.SIGUSR2, _collect)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "director_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
