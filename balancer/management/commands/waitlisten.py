"""`manage.py waitlisten ADDR... [--timeout S]`: wait until every address accepts connections.

`make run` starts the demo backends in the background and runs this before `runproxy`, so the
first health checks find them answering (else the proxy's first seconds are 503s). Exit 1
naming the addresses still refusing when the timeout passes.
"""
from __future__ import annotations

import socket
import time

from django.core.management.base import BaseCommand, CommandError

from proxy.addresses import ListenAddress, parse_listen

POLL_S = 0.05


def accepts(address: ListenAddress) -> bool:
    if address.path is not None:
        family, target = socket.AF_UNIX, address.path
    else:
        family = socket.AF_INET6 if ":" in str(address.host) else socket.AF_INET
        target = (address.host, address.port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(target) == 0


class Command(BaseCommand):
    help = "Wait until every ADDR (HOST:PORT, [V6]:PORT, unix:/path) accepts connections."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("addresses", nargs="+", metavar="ADDR")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait at most (default 30)")

    def handle(self, *args, addresses, timeout, **options):
        try:
            waiting = [parse_listen(text) for text in addresses]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = [address for address in waiting if not accepts(address)]
            if waiting and time.monotonic() > deadline:
                raise CommandError(f"not accepting connections after {timeout:g}s: "
                                   + ", ".join(str(a) for a in waiting))
            if waiting:
                time.sleep(POLL_S)
