"""Checking that internals a program relies on are still there, with the shape relied on.

`proxy.twisted_compat` lists the daphne and Twisted internals Director uses as `Need`s;
`problems()` looks at each (present, callable with the same parameters, its source still
naming what the adapter depends on) and describes every one that does not fit, so that an
upgrade fails at start with the whole list, never silently in the middle of a request.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    """One internal relied on: `name` on `owner` (a module, a class, or a function making
    a fresh instance), callable with `params` when given, its source naming `mentions`."""

    owner: object
    name: str
    params: tuple[str, ...] | None = None
    mentions: tuple[str, ...] = ()


def _where(owner) -> str:
    if inspect.ismodule(owner):
        return owner.__name__
    if inspect.isclass(owner):
        return f"{owner.__module__}.{owner.__qualname__}"
    return f"a fresh {_where(type(owner))}"  # an instance a factory made


def problems(wanted: list[Need]) -> list[str]:
    """What does not fit, one phrase per need; empty when everything does."""
    found: list[str] = []
    instances: dict[Callable, object] = {}  # factory -> the instance it made (or its failure)
    for need in wanted:
        owner = need.owner
        if callable(owner) and not inspect.isclass(owner):
            factory = owner
            if factory not in instances:
                try:
                    instances[factory] = factory()
                except Exception as exc:  # noqa: BLE001  # reported, not raised: the check lists all
                    instances[factory] = exc
            owner = instances[factory]
            if isinstance(owner, Exception):
                found.append(f"{getattr(factory, '__name__', factory)} failed ({owner})")
                continue
        where = _where(owner)
        if not hasattr(owner, need.name):
            found.append(f"{where} has no attribute {need.name}")
            continue
        value = getattr(owner, need.name)
        if need.params is not None:
            try:
                params = tuple(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                found.append(f"{where}.{need.name} is not a function")
                continue
            if params != need.params:
                found.append(f"{where}.{need.name} takes ({', '.join(params)}), not ({', '.join(need.params)})")
        source = inspect.getsource(value) if need.mentions else ""
        found += [f"{where}.{need.name} no longer uses {word}" for word in need.mentions if word not in source]
    return found
