"""Operator commands behind `make run`: ensureadmin and demobackends (a real process)."""
import io
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tests.support.processes import Process, python_args
from tests.support.waiting import free_port, wait_for, wait_port

REQUEST = b"GET /any/path?x=1 HTTP/1.1\r\nHost: demo\r\n\r\n"
POST_CHUNKED = b"POST / HTTP/1.1\r\nHost: demo\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
REQUEST_CLOSE = b"HEAD / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"


def ensureadmin(monkeypatch, password=None) -> str:
    if password is None:
        monkeypatch.delenv("DIRECTOR_ADMIN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("DIRECTOR_ADMIN_PASSWORD", password)
    out = io.StringIO()
    call_command("ensureadmin", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_ensureadmin_generates_once_then_explains_reset(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no director.toml here: the default admin address is shown
    first = ensureadmin(monkeypatch)
    assert first.startswith("admin login: admin / ") and "at http://127.0.0.1:8081/admin/" in first
    password = first.split(" / ")[1].split(" at ")[0]
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.check_password(password) and len(password) >= 16
    second = ensureadmin(monkeypatch)
    assert password not in second and "manage.py changepassword admin" in second
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_ensureadmin_takes_password_from_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "director.toml").write_text('[proxy]\nadmin_listen = "127.0.0.1:9181"\n')
    out = ensureadmin(monkeypatch, "s3cret-one-horse")
    assert "s3cret-one-horse" not in out and "http://127.0.0.1:9181/admin/" in out
    assert get_user_model().objects.get(username="admin").check_password("s3cret-one-horse")
    ensureadmin(monkeypatch, "s3cret-two-horse")
    assert get_user_model().objects.get(username="admin").check_password("s3cret-two-horse")


@pytest.mark.django_db
@pytest.mark.parametrize("weak, reason", [("short1", "too short"), ("password123", "too common"),
                                          ("8172635490", "entirely numeric")])
def test_ensureadmin_refuses_a_weak_password_saying_why(monkeypatch, tmp_path, weak, reason):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match=f"DIRECTOR_ADMIN_PASSWORD refused: .*{reason}"):
        ensureadmin(monkeypatch, weak)
    assert not get_user_model().objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_the_admin_password_change_form_applies_the_validators(admin_client):
    response = admin_client.post("/admin/password_change/", {
        "old_password": "password", "new_password1": "12345678", "new_password2": "12345678"})
    assert response.status_code == 200 and "This password is too short" in response.content.decode()


def exchange(sock: socket.socket, request: bytes, expect_close: bool = False) -> bytes:
    sock.sendall(request)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and not expect_close and b"Content-Length: " in head:
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            if len(body) >= length:
                return data


def test_demobackends_answer_with_keep_alive_and_stop_on_sigterm(tmp_path):
    ports = [free_port(), free_port()]
    proc = Process(python_args("manage.py", "demobackends", *[f"--listen=127.0.0.1:{p}" for p in ports]),
                   tmp_path / "demo.log")
    try:
        for port in ports:
            wait_port("127.0.0.1", port)
        for name, port in zip(("app1", "app2"), ports):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                first = exchange(sock, REQUEST)
                assert first.startswith(b"HTTP/1.1 200 OK\r\n")
                assert first.endswith(b"\r\n\r\ndemo backend " + name.encode() + b"\n")
                second = exchange(sock, POST_CHUNKED)  # same connection: keep-alive, body consumed
                assert second == first
                last = exchange(sock, REQUEST_CLOSE, expect_close=True)
                assert last.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in last
                assert last.endswith(b"\r\n\r\n")  # HEAD: no body
        assert "demo backend app2 listening on 127.0.0.1:%d" % ports[1] in proc.output()
    finally:
        assert proc.stop() == 0
    wait_for(lambda: not proc.alive(), what="demobackends to exit")


def test_demobackends_stop_quietly_with_kept_alive_connections_open(tmp_path):
    """runproxy keeps pooled connections to the demo backends; stopping must not print tracebacks."""
    port = free_port()
    proc = Process(python_args("manage.py", "demobackends", f"--listen=127.0.0.1:{port}"), tmp_path / "demo.log")
    try:
        wait_port("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert exchange(sock, REQUEST).startswith(b"HTTP/1.1 200 OK\r\n")
            assert proc.stop() == 0  # the connection is still open, its handler waiting for a request
    finally:
        proc.stop()
    assert "Traceback" not in proc.output(), proc.output()
