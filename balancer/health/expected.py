"""`health_check_expected_status` ("200", "200-399", "200,204") as a fast status matcher.

Parsing and its error messages are the shared value rule in `balancer.validation`, so the API,
the admin, the config file and the monitor accept exactly the same texts.
"""
from __future__ import annotations

from balancer.validation import parse_expected_status


class ExpectedStatus:
    """A set of HTTP status codes; `status in expected` is one hash lookup."""

    __slots__ = ("text", "_codes")

    def __init__(self, text: str):
        ranges = parse_expected_status(text)  # ValueError naming the bad part
        self.text = str(text)
        self._codes = frozenset(code for low, high in ranges for code in range(low, high + 1))

    def __contains__(self, status: object) -> bool:
        return status in self._codes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExpectedStatus) and other._codes == self._codes

    def __hash__(self) -> int:
        return hash(self._codes)

    def __repr__(self) -> str:
        return f"ExpectedStatus({self.text!r})"


DEFAULT_EXPECTED = ExpectedStatus("200")
