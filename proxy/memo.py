"""Bounded memos for the hot path: what one request computed that the next will ask again
(a field line found valid, an encoded FastCGI pair, a status line).

A memo is a plain dict, read inline with `.get` (a method call on a dict is the cheapest
lookup there is); `remember` stores into it and empties it first when it is full. Emptying
instead of evicting costs nothing per lookup: entries that never repeat (request ids, Date
values) fill it slowly, and the ones that do repeat are back after one round.
"""
from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V, kept: int) -> V:
    """Store `value` under `key` (emptying `memo` first when it holds `kept` entries) and
    return it."""
    if len(memo) >= kept:
        memo.clear()
    memo[key] = value
    return value
