"""A backend that answers after `?delay=` seconds and counts the requests it holds at once,
per tier (the request's X-Tier header, "none" without one): `current`, the `most` it ever
held, and those `done`. Requests without `delay=` (health checks) are answered at once and
not counted.

    with CountingBackend() as backend:
        ...  # backend.port, backend.most["none"], backend.current["gold"]
"""
from __future__ import annotations

import asyncio
from collections import Counter

from tests.support.backends import _ServerThread


class CountingBackend(_ServerThread):
    def __init__(self):
        super().__init__("127.0.0.1", 0, None)
        self.current: Counter = Counter()
        self.most: Counter = Counter()
        self.done: Counter = Counter()

    async def handle(self, reader, writer, number):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            if b"delay=" in target:
                tier = _tier(head)
                self.current[tier] += 1
                self.most[tier] = max(self.most[tier], self.current[tier])
                try:
                    await asyncio.sleep(float(target.split(b"delay=")[1]))
                finally:
                    self.current[tier] -= 1
                    self.done[tier] += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def _tier(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-tier":
            return value.strip().decode()
    return "none"
