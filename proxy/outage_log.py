"""One log line when a repeating task starts failing and one when it works again, instead
of a line per attempt (a database outage would otherwise log every half second per loop)."""
from __future__ import annotations

import logging


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str):
        self.logger = logger
        self.what = what
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            self.failing = True
            self.logger.warning("%s (until it works again): %s", self.what, " ".join(str(exc).split()))

    def ok(self) -> None:
        if self.failing:
            self.failing = False
            self.logger.info("%s: works again", self.what)
