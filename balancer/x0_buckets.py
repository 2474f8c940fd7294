"""`[bucket=NAME]` sections of x0 director files (SPEC §10, §15 "Buckets").

x0 wrote `rate` and `ceil` (fractions of the director's capacity) and only had children of
root; Director adds `parent` (a bucket of the same file, absent or empty for root) and,
like everywhere else, lets `ceil` default to `rate`. The values and the tree they form are
checked by `balancer.bucket_rules`, so a file is refused with the API's messages, spelled
`[bucket=NAME] key: message`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import bucket_rules, validation
from .bucket_services import TREE_FIELDS

PREFIX = "bucket="
KEYS = ("rate", "ceil", "parent")  # the bucket's fields as x0 file keys (its name is the section's)

T = TypeVar("T")


def read_bucket(section_name: str, section, typed: Callable[[validation.Rule, str], Any],
                errors: list[str]) -> tuple[str, dict] | None:
    """(name, cleaned fields) of one section, or None after adding its errors to `errors`."""
    name = section_name.removeprefix(PREFIX)
    data: dict = {"name": name}
    failed = len(errors)
    for key, text in section.items():
        if key not in KEYS:
            errors.append(f"[{section_name}] {key}: unknown key")
            continue
        try:
            data[key] = typed(bucket_rules.BUCKET_FIELDS[key], text)
        except ValueError as exc:
            errors.append(f"[{section_name}] {key}: {exc}")
    typing_failed = {key for key in KEYS if key in section and key not in data}
    cleaned, field_errors = bucket_rules.clean_bucket(data, creating=True)
    for field, messages in field_errors.items():
        if field not in typing_failed:
            errors.extend(error_lines(name, field, messages))
    return None if len(errors) > failed else (name, cleaned)


def tree_errors(buckets: list[tuple[str, dict]]) -> list[str]:
    """Errors of the tree the file's buckets form (rates over ceilings or over their parent's
    share, unknown parents, cycles)."""
    tree = {name: {f: fields[f] for f in TREE_FIELDS} for name, fields in buckets}
    return [line for name, fields in bucket_rules.tree_errors(tree).items()
            for field, messages in fields.items() for line in error_lines(name, field, messages)]


def error_lines(name: str, field: str, messages: list[str]) -> list[str]:
    """`[bucket=NAME] key: message` lines (the name's own errors as `[bucket=NAME]: ...`)."""
    where = f"[{PREFIX}{name}]" if field in ("name", "non_field_errors") else f"[{PREFIX}{name}] {field}"
    return [f"{where}: {message}" for message in messages]


def parents_first(buckets: Iterable[T], name: Callable[[T], str], parent: Callable[[T], str]) -> list[T]:
    """`buckets` reordered so that every parent comes before its children (creating a child
    needs its parent), otherwise in the given order. Buckets below an unknown parent or in a
    cycle come last, for validation to name."""
    pending = list(buckets)
    placed: set[str] = set()
    ordered: list[T] = []
    progress = True
    while pending and progress:
        ready = [b for b in pending if not parent(b) or parent(b) in placed]
        progress = bool(ready)
        ordered += ready
        placed.update(name(b) for b in ready)
        pending = [b for b in pending if name(b) not in placed]
    return ordered + pending


def render_buckets(director) -> list[str]:
    """The director's bucket sections, parents first (a child names its parent)."""
    lines: list[str] = []
    for bucket in parents_first(director.buckets.order_by("name"), lambda b: b.name, lambda b: b.parent):
        lines += ["", f"[{PREFIX}{bucket.name}]", f"rate={bucket.rate!r}", f"ceil={bucket.ceil!r}"]
        if bucket.parent:
            lines.append(f"parent={bucket.parent}")
    return lines
