"""The node's open connections to one FastCGI backend, held within its capacity (`--workers`).

php-fpm gives each open connection a child of its own until the connection closes, kept-alive
ones included, and a connection beyond its children waits in the listen backlog. Node slots
(proxy.node_slots) count requests, not connections: a worker that served a burst kept its
connections idle, holding children, while another worker's request took the free slot and
opened a connection that then waited, in the backlog, for an idle one to be closed - up to the
2 s idle timeout (measured: p99 1.8 s through two workers to php-fpm, against 8 ms for one).

Here every worker counts the connections it has open in a row of the node table, one column
per worker. A worker keeps a connection idle only while the node's total is within the
backend's capacity; one that opens a connection beyond it rings the other workers holding
connections (proxy.node_wake), and they close idle ones at once (`ConnectionPool.trim`).
"""
from __future__ import annotations

from proxy.node_slots import NodeSlots, connections_key


class ConnectionBudget:
    """Open connections of this process to one backend address, in the node's count."""

    def __init__(self, node: NodeSlots, url: str, limit: int, open_now: int = 0):
        """`open_now`: connections the client already has (a capacity set by a reload)."""
        self._node = node
        self._key = connections_key(url)
        self.limit = limit  # the backend's capacity: php-fpm's children for it; 0 = no limit
        self._open = open_now
        node.set_count(self._key, open_now)

    def opened(self) -> None:
        """A connection was opened; beyond the limit, ask the other holders to close idle ones."""
        self._open += 1
        self._node.set_count(self._key, self._open)
        if self.over():
            self._node.ring_holders(self._key)

    def closed(self) -> None:
        self._open = max(0, self._open - 1)
        self._node.set_count(self._key, self._open)

    def over(self) -> bool:
        """More connections are open in the node than the backend has room for: some wait."""
        return bool(self.limit) and self._node.total(self._key) > self.limit
