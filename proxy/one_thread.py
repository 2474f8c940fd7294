"""One named worker thread for blocking calls made from async code.

Everything submitted runs in that same thread, in order: state the calls keep per thread
(a database connection, above all) is made once and reused, instead of once per thread of
asyncio's default executor or once per call.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


class OneThread:
    def __init__(self, name: str):
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        return self._executor

    def run(self, func, *args) -> asyncio.Future:
        """`func(*args)` in the thread; an awaitable future."""
        return asyncio.get_running_loop().run_in_executor(self._pool(), func, *args)

    def call(self, func, *args):
        """`func(*args)` in the thread, waited for here: for code outside the event loop."""
        return self._pool().submit(func, *args).result()

    def shutdown(self) -> None:
        """Stop the thread once what was submitted has run (a later call starts a new one)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
