"""proxy.reactor: readers go straight to the uvloop loop; a file epoll refuses is polled."""
import asyncio
import socket

import pytest
import uvloop

from proxy.reactor import DirectorReactor
from proxy.twisted_compat import event_loop_of


class Reader:
    """The smallest IReadDescriptor: a file number and what the reactor calls."""

    def __init__(self, fileno):
        self._fileno = fileno
        self.reads = 0

    def fileno(self):
        return self._fileno

    def doRead(self):
        self.reads += 1
        return None

    def connectionLost(self, reason):
        pass

    def logPrefix(self):
        return "reader"


@pytest.fixture
def reactor():
    loop = uvloop.new_event_loop()
    reactor = DirectorReactor(loop)
    yield reactor
    loop.close()


def test_socket_reader_is_called_directly_on_the_loop(reactor):
    left, right = socket.socketpair()
    with left, right:
        reader = Reader(left.fileno())
        reactor.addReader(reader)
        assert reader in reactor.getReaders()
        right.send(b"x")
        loop = event_loop_of(reactor)
        loop.run_until_complete(_until(lambda: reader.reads > 0, loop))
        reactor.removeReader(reader)
        assert reader not in reactor.getReaders()
        assert not loop.remove_reader(left.fileno())  # the reactor took it off the loop


def test_regular_file_falls_back_to_twisteds_polling(reactor, tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(b"data")
    with open(path, "rb") as file:
        reader = Reader(file.fileno())
        reactor.addReader(reader)  # epoll refuses regular files (EPERM)
        assert reader in reactor.getReaders()  # polled by Twisted instead
        assert not event_loop_of(reactor).remove_reader(file.fileno())  # never on the loop
        reactor.removeReader(reader)
        assert reader not in reactor.getReaders()


async def _until(predicate, loop, timeout=5.0):
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the reader was never called"
        await asyncio.sleep(0.01)
