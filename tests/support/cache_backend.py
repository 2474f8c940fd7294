"""A backend for response cache tests: its answers are shaped by the query string and it
counts every request it gets, so a test sees whether the cache or the backend answered.

    with cache_backend("c1") as b:
        b.count("/page")        # requests whose path is /page (any query)
        b.requests("/page")     # [(method, target, headers)] of those

Query parameters (all optional):
  status=N     response status (default 200)
  cc=TEXT      Cache-Control value         pragma=TEXT  Pragma value
  vary=TEXT    Vary value                  cookie=1     adds Set-Cookie: s=1
  etag=TEXT    ETag value (quotes added)   lm=1         Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT
  size=N       body of N pattern bytes (default: "<name> <path> #<n>", n counting that path's requests)
  chunked=1    body sent chunked in 4 KiB chunks instead of with a Content-Length
  delay=S      answer after S seconds
  echo=NAME    body is the value of request header NAME
  die=1        chunked: sends the head and the first chunk, then closes the connection
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from tests.support.backends import _head, _ServerThread, pattern_bytes, read_body, read_head

LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"
CHUNK = 4096


class CacheBackend(_ServerThread):
    def __init__(self, name: str):
        super().__init__("127.0.0.1", 0, None)
        self.name = name
        self.seen: dict[str, list[tuple[str, str, dict]]] = defaultdict(list)

    def count(self, path: str) -> int:
        return self.call(lambda: len(self.seen.get(path, ())))

    def requests(self, path: str) -> list[tuple[str, str, dict]]:
        return self.call(lambda: list(self.seen.get(path, ())))

    async def handle(self, reader, writer, number):
        while True:
            head = await read_head(reader)
            if head is None:
                return
            method, target, headers = head
            await read_body(reader, headers, keep=False)
            url = urlsplit(target)
            self.seen[url.path].append((method, target, headers))
            ordinal = len(self.seen[url.path])
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if "delay" in query:
                await asyncio.sleep(float(query["delay"]))
            response = self._response(method, url.path, query, headers, ordinal)
            if "die" in query:
                writer.write(response[:response.index(b"\r\n\r\n") + 4] + b"5\r\nhello\r\n")
                await writer.drain()
                return  # closed mid-body
            writer.write(response)
            await writer.drain()

    def _response(self, method: str, path: str, query: dict, headers: dict, ordinal: int) -> bytes:
        status = int(query.get("status", "200"))
        if "size" in query:
            body = pattern_bytes(int(query["size"]))
        elif "echo" in query:
            body = ",".join(headers.get(query["echo"].lower(), [])).encode()
        else:
            body = f"{self.name} {path} #{ordinal}".encode()
        if status in (204, 304):
            body = b""
        fields = [("x-backend", self.name)]
        for param, name in (("cc", "cache-control"), ("pragma", "pragma"), ("vary", "vary")):
            if param in query:
                fields.append((name, query[param]))
        if "etag" in query:
            fields.append(("etag", f'"{query["etag"]}"'))
        if "lm" in query:
            fields.append(("last-modified", LAST_MODIFIED))
        if "cookie" in query:
            fields.append(("set-cookie", "s=1; Path=/"))
        chunked = ("chunked" in query or "die" in query) and status not in (204, 304)
        if chunked:
            fields.append(("transfer-encoding", "chunked"))
        elif status not in (204, 304):
            fields.append(("content-length", str(len(body))))
        if method == "HEAD":
            return _head(status, fields)
        if not chunked:
            return _head(status, fields) + body
        parts = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)]
        return _head(status, fields) + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@contextlib.contextmanager
def cache_backend(name: str):
    backend = CacheBackend(name).start()
    try:
        yield backend
    finally:
        backend.stop()
