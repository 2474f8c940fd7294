"""X-Sendfile (SPEC §15) through a real runproxy: an HTTP backend and php-fpm name files
under `x_sendfile_root`, Director sends them (ranges, conditional requests, HEAD), refuses
paths outside the root, drops the header where it is not allowed, and streams 100 MiB with
bounded memory. Also: the setting's validation in the config file and the API."""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
from email.utils import formatdate
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.core.management import CommandError, call_command

from balancer.config import ConfigError, parse_config
from balancer.models import Director as DirectorRow
from tests.integration.test_admin import DIRECTORS, director_post
from tests.support.api import ApiTestBase, make_director
from tests.support.backends import Backend
from tests.support.director import Director
from tests.support.fastcgi_servers import PHP_ROOT, start_php_fpm
from tests.support.waiting import free_port, wait_for

MIB = 1024 * 1024
TEXT = b"the file, not the backend's body\n" * 100
BACKEND_BODY = b"backend body that must not reach the client\n"


class SendfileBackend(Backend):
    """The test backend, plus `/sendfile?file=PATH[&type=T][&size=N]`: X-Sendfile: PATH and
    a body of N bytes (default: BACKEND_BODY)."""

    def __init__(self, name: str):
        super().__init__(name, "127.0.0.1", 0, None, None, "close")

    async def _respond(self, reader, writer, number, method, target, headers) -> bool:
        url = urlsplit(target)
        if url.path != "/sendfile":
            return await super()._respond(reader, writer, number, method, target, headers)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        extra = [("x-sendfile", query.get("file", "")), ("set-cookie", "kept=1")]
        if "type" in query:
            extra.append(("content-type", query["type"]))
        body = b"x" * int(query["size"]) if "size" in query else BACKEND_BODY
        await self._send(writer, number, 200, body, extra, method == "HEAD")
        return True


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The sendfile root: hello.txt, data.bin, sub/ and link.txt (a symlink out of the root
    to secret.txt beside it); `big` is made by the test that needs it."""
    base = tmp_path_factory.mktemp("sendfile")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(TEXT)
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "sub" / "inner.json").write_bytes(b'{"inner": true}')
    with socket.socket(socket.AF_UNIX) as unopenable:  # open() of a socket file fails (ENXIO), even for root
        unopenable.bind(str(root / "socket"))
    (base / "secret.txt").write_bytes(b"outside the root")
    (root / "link.txt").symlink_to(base / "secret.txt")
    (root / "inner-link.txt").symlink_to(root / "hello.txt")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture(scope="module")
def director(files, tmp_path_factory):
    backend = SendfileBackend("f1").start()
    php = start_php_fpm(tmp_path_factory.mktemp("sendfile-php"), free_port())
    hello = PHP_ROOT / "hello.php"
    config = f"""
        [directors.files]
        allow_x_sendfile = true
        x_sendfile_root = "{files}"
        health_check_success_threshold = 1
        backends = {{ f1 = {{ url = "{backend.url}", health_check_interval = 0.5 }} }}

        [directors.plain]
        health_check_success_threshold = 1
        backends = {{ p1 = {{ url = "{backend.url}", health_check_interval = 0.5 }} }}

        [directors.php]
        allow_x_sendfile = true
        x_sendfile_root = "{files}"
        health_check_success_threshold = 1
        health_check_request_path = "/hello.php"
        health_check_fcgi_script_filename = "{hello}"
        backends = {{ fpm = {{ url = "fastcgi+unix://{php.socket_path}", health_check_interval = 0.5 }} }}

        [[routes]]
        host = "files"
        pass = "files"
        [[routes]]
        host = "plain"
        pass = "plain"
        [[routes]]
        host = "php"
        pass = "php"
        document_root = "{PHP_ROOT}"
    """
    d = Director(tmp_path_factory.mktemp("sendfile-proxy"), config).start()
    try:
        for host, path in (("files", "/"), ("plain", "/"), ("php", "/hello.php")):
            wait_for(lambda: d.get(path, headers={"Host": host})[0] == 200, 20, what=f"{host} online")
        d.backend = backend
        yield d
    finally:
        d.stop()
        php.stop()
        backend.stop()


def sendfile(director, file: str, host: str = "files", method: str = "GET", headers=None, **query):
    script = "/sendfile.php" if host == "php" else "/sendfile"
    target = script + "?file=" + quote(file, safe="/") + "".join(f"&{k}={quote(str(v))}" for k, v in query.items())
    return director.request(method, target, headers={"Host": host, **(headers or {})})


def test_the_named_file_answers_with_its_length_type_date_and_etag(director, files):
    status, headers, body = sendfile(director, str(files / "hello.txt"))
    assert status == 200 and body == TEXT
    assert headers["content-length"] == str(len(TEXT))
    assert headers["content-type"] == "text/plain"
    assert headers["last-modified"] == formatdate((files / "hello.txt").stat().st_mtime, usegmt=True)
    assert headers["etag"].startswith('"') and headers["accept-ranges"] == "bytes"
    assert "x-sendfile" not in headers
    assert headers["x-backend"] == "f1" and headers["set-cookie"] == "kept=1"  # the backend's other fields stay


def test_a_path_relative_to_the_root_and_a_symlink_inside_it(director):
    assert sendfile(director, "sub/inner.json")[1]["content-type"] == "application/json"
    assert sendfile(director, "sub/inner.json")[2] == b'{"inner": true}'
    assert sendfile(director, "inner-link.txt")[2] == TEXT


def test_the_backends_content_type_wins(director, files):
    status, headers, body = sendfile(director, str(files / "data.bin"), type="image/png")
    assert status == 200 and headers["content-type"] == "image/png" and body == bytes(range(256)) * 4


def test_an_unknown_extension_is_octet_stream(director, files):
    (files / "blob.zzqx").write_bytes(b"blob")
    assert sendfile(director, "blob.zzqx")[1]["content-type"] == "application/octet-stream"


def test_head_answers_the_files_head_without_a_body(director, files):
    status, headers, body = sendfile(director, str(files / "hello.txt"), method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(TEXT))


@pytest.mark.parametrize("wanted, status, content_range, part", [
    ("bytes=10-19", 206, "bytes 10-19/1024", slice(10, 20)),
    ("bytes=1000-", 206, "bytes 1000-1023/1024", slice(1000, 1024)),
    ("bytes=-24", 206, "bytes 1000-1023/1024", slice(1000, 1024)),
    ("bytes=1000-5000", 206, "bytes 1000-1023/1024", slice(1000, 1024)),
    ("bytes=0-1,5-6", 200, None, slice(0, 1024)),  # several ranges: the whole file
    ("bytes=x-y", 200, None, slice(0, 1024)),  # malformed: ignored
])
def test_ranges(director, wanted, status, content_range, part):
    data = bytes(range(256)) * 4
    got_status, headers, body = sendfile(director, "data.bin", headers={"Range": wanted})
    assert got_status == status and body == data[part]
    assert headers.get("content-range") == content_range
    assert headers["content-length"] == str(len(data[part]))


def test_an_unsatisfiable_range_is_416(director):
    status, headers, _ = sendfile(director, "data.bin", headers={"Range": "bytes=2000-"})
    assert status == 416 and headers["content-range"] == "bytes */1024"


def test_if_range_with_another_etag_sends_the_whole_file(director):
    status, _, body = sendfile(director, "data.bin", headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert status == 200 and len(body) == 1024
    etag = sendfile(director, "data.bin")[1]["etag"]
    assert sendfile(director, "data.bin", headers={"Range": "bytes=0-9", "If-Range": etag})[0] == 206


def test_conditional_requests_answer_304(director):
    _, headers, _ = sendfile(director, "hello.txt")
    etag, modified = headers["etag"], headers["last-modified"]
    status, headers304, body = sendfile(director, "hello.txt", headers={"If-None-Match": etag})
    assert status == 304 and body == b"" and headers304["etag"] == etag
    assert sendfile(director, "hello.txt", headers={"If-None-Match": f'"x", W/{etag}'})[0] == 304
    assert sendfile(director, "hello.txt", headers={"If-Modified-Since": modified})[0] == 304
    assert sendfile(director, "hello.txt", headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:01 GMT"})[0] == 200
    assert sendfile(director, "hello.txt", headers={"If-None-Match": '"other"', "If-Modified-Since": modified})[0] == 200
    assert sendfile(director, "hello.txt", method="POST", headers={"If-None-Match": etag})[0] == 200  # GET/HEAD only


@pytest.mark.parametrize("name, problem", [
    ("../secret.txt", "resolves outside x_sendfile_root"),
    ("link.txt", "resolves outside x_sendfile_root"),  # a symlink out of the root
    ("/etc/passwd", "resolves outside x_sendfile_root"),
    ("missing.txt", "no such file"),
    ("sub", "is not a regular file"),
    ("fifo", "is not a regular file"),  # opened without waiting for a writer
    ("", "resolves outside x_sendfile_root"),  # the root itself
])
def test_refused_paths_are_404_with_a_warning(director, files, name, problem):
    status, headers, body = sendfile(director, name)
    assert status == 404 and b"outside the root" not in body and "x-sendfile" not in headers
    wait_for(lambda: f"director files: X-Sendfile {name!r} {problem}" in director.output(), 5,
             what="the warning in the log")


def test_a_file_that_cannot_be_opened_is_404(director, files):
    assert sendfile(director, "socket")[0] == 404
    wait_for(lambda: "director files: X-Sendfile 'socket' cannot be opened" in director.output(), 5,
             what="the warning in the log")


def test_not_allowed_the_header_is_dropped_and_the_body_relayed(director, files):
    status, headers, body = sendfile(director, str(files / "hello.txt"), host="plain")
    assert status == 200 and body == BACKEND_BODY and "x-sendfile" not in headers


def test_the_backends_body_is_discarded_and_its_connection_reused(director):
    first = sendfile(director, "hello.txt", size=200_000)
    second = sendfile(director, "hello.txt", size=10)
    assert first[2] == second[2] == TEXT
    assert first[1]["x-connection"] == second[1]["x-connection"]  # one keep-alive connection upstream


def test_fastcgi_x_sendfile_from_php(director, files):
    status, headers, body = sendfile(director, "data.bin", host="php")
    assert status == 200 and body == bytes(range(256)) * 4
    assert headers["x-from"] == "php" and "x-sendfile" not in headers
    assert headers["content-type"].startswith("text/html")  # PHP's default type: the backend's wins
    assert sendfile(director, "../secret.txt", host="php")[0] == 404


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


def test_100_mib_streams_with_bounded_memory(director, files):
    block = os.urandom(MIB)
    with open(files / "big.bin", "wb") as out:
        for _ in range(100):
            out.write(block)
    expected = hashlib.sha256(block * 100).hexdigest()
    pid = director.process.pid
    before = peak = _rss_kib(pid)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, _rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", director.port, timeout=60)
    try:
        conn.request("GET", "/sendfile?file=big.bin", headers={"Host": "files"})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("content-length") == str(100 * MIB)
        digest, received = hashlib.sha256(), 0
        while chunk := response.read(64 * 1024):
            digest.update(chunk)
            received += len(chunk)
            if received < 8 * MIB:  # a slow reader first: the proxy must wait for it, not buffer
                done.wait(0.002)
    finally:
        conn.close()
        done.set()
        sampler.join(5)
    assert received == 100 * MIB and digest.hexdigest() == expected
    print(f"runproxy RSS grew by {peak - before} KiB serving 100 MiB")
    assert peak - before < 40 * 1024, f"runproxy RSS grew by {peak - before} KiB"


# --- validation -------------------------------------------------------------------------------

def test_config_allowed_without_a_root_names_the_key():
    with pytest.raises(ConfigError) as info:
        parse_config('[directors.app]\nallow_x_sendfile = true\nbackends = { a1 = "http://127.0.0.1:1" }\n')
    assert any(e.startswith("directors.app.x_sendfile_root: required") for e in info.value.errors)


def test_config_root_that_is_no_directory_names_the_key(tmp_path):
    text = (f'[directors.app]\nallow_x_sendfile = true\nx_sendfile_root = "{tmp_path / "nope"}"\n'
            'backends = { a1 = "http://127.0.0.1:1" }\n')
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert [e for e in info.value.errors if e.startswith("directors.app.x_sendfile_root")] == [
        f"directors.app.x_sendfile_root: '{tmp_path / 'nope'}' is not an existing directory"]


class TestApi(ApiTestBase):
    @pytest.fixture(autouse=True)
    def dyn(self, _api_clients):
        make_director("dyn", backends={"b1": "http://127.0.0.1:3001"})

    def test_allowing_without_a_root_is_400_naming_the_root(self):
        self.rejected("PATCH", "/api/v1/directors/dyn/", {"allow_x_sendfile": True}, fields={"x_sendfile_root"})
        self.rejected("POST", "/api/v1/directors/", {"name": "new", "allow_x_sendfile": True},
                      fields={"x_sendfile_root"})

    def test_a_root_that_is_no_directory_is_400(self, tmp_path):
        self.rejected("PATCH", "/api/v1/directors/dyn/", {"x_sendfile_root": str(tmp_path / "nope")},
                      fields={"x_sendfile_root"})

    def test_root_first_then_allow_and_clearing_the_root_while_allowed(self, tmp_path):
        assert self.operator.patch("/api/v1/directors/dyn/", {"x_sendfile_root": str(tmp_path)},
                                   format="json").status_code == 200
        response = self.operator.patch("/api/v1/directors/dyn/", {"allow_x_sendfile": True}, format="json")
        assert response.status_code == 200 and response.json()["allow_x_sendfile"] is True
        self.rejected("PATCH", "/api/v1/directors/dyn/", {"x_sendfile_root": ""}, fields={"x_sendfile_root"})


@pytest.mark.django_db
def test_x0_import_names_a_root_that_is_no_directory(tmp_path):
    path = tmp_path / "d.x0"
    path.write_text(f"[director]\nx-sendfile-root={tmp_path / 'nope'}\n")
    with pytest.raises(CommandError, match=r"\[director\] x-sendfile-root: .* is not an existing directory"):
        call_command("importx0", "imported", str(path))
    assert not DirectorRow.objects.filter(name="imported").exists()


@pytest.mark.django_db
def test_admin_form_names_the_root(admin_client):
    response = admin_client.post(f"{DIRECTORS}add/", director_post(name="new", allow_x_sendfile="on"))
    assert "required when allow_x_sendfile is true" in response.context["adminform"].form.errors["x_sendfile_root"][0]
