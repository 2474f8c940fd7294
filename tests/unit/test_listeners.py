"""proxy.listeners.ListenerSockets: a SO_REUSEPORT socket per worker on one TCP port, one
shared UNIX socket, and nothing left open or on disk after close() or a failed bind."""
import socket

import pytest

from proxy.addresses import ListenAddress
from proxy.listeners import ListenError, ListenerSockets


def test_each_worker_gets_its_own_tcp_socket_on_one_port_and_shares_the_unix_one(tmp_path):
    tcp = ListenAddress(host="127.0.0.1", port=0)  # port 0: the first bind picks, the rest follow
    unix = ListenAddress(path=str(tmp_path / "d.sock"))
    listeners = ListenerSockets([tcp, unix], 3)
    try:
        sets = [listeners.for_worker(i) for i in range(3)]
        tcp_sockets = [s[tcp] for s in sets]
        assert len({id(s) for s in tcp_sockets}) == 3
        assert len({s.getsockname()[1] for s in tcp_sockets}) == 1
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in tcp_sockets)
        assert len({id(s[unix]) for s in sets}) == 1
        port = tcp_sockets[0].getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the group accepts
    finally:
        listeners.close()
    assert all(s.fileno() == -1 for s in [*tcp_sockets, sets[0][unix]])
    assert not (tmp_path / "d.sock").exists()


def test_a_failed_bind_closes_what_was_made(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # bound without SO_REUSEPORT: nobody may join it
    taken.listen()
    unix = ListenAddress(path=str(tmp_path / "d.sock"))
    try:
        with pytest.raises(ListenError, match=r"cannot listen on 127\.0\.0\.1:\d+: address already in use"):
            ListenerSockets([unix, ListenAddress(host="127.0.0.1", port=taken.getsockname()[1])], 2)
    finally:
        taken.close()
    assert not (tmp_path / "d.sock").exists()
