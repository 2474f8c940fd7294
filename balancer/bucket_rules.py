"""Value rules of buckets (SPEC §15 "Buckets"): each bucket's fields, and the tree they form.

The config file loader, the services (API, admin) and the config sync check buckets here,
so a bucket is refused with the same message everywhere. `tree_errors` checks a whole
director's buckets at once: the config file gives them all together, and a service writes
one bucket by checking the tree it would leave behind.
"""
from __future__ import annotations

from typing import Any

from proxy.buckets import ROOT

from . import validation

FRACTION = validation.Rule("number", minimum=0, maximum=1)
BUCKET_FIELDS: dict[str, validation.Rule] = {
    "name": validation.NAME_RULE,
    "parent": validation.Rule("str", "", max_length=64, pattern=f"^$|^{validation.NAME_PATTERN.pattern}$"),
    "rate": FRACTION,
    "ceil": FRACTION,
}
BUCKET_REQUIRED = ("name", "rate")
BUCKET_IMMUTABLE = ("name",)
RESERVED_MESSAGE = f"{ROOT!r} is the implicit top bucket; choose another name"
SUM_SLACK = 1e-9  # 0.1 + 0.2 + 0.7 is 1.0000000000000002 in binary


def clean_bucket(data: Any, *, creating: bool) -> tuple[dict, dict[str, list[str]]]:
    """(cleaned fields, {field: [messages]}) of one bucket's fields. `ceil` defaults to `rate`
    when a new bucket does not set it (x0: a bucket borrows nothing unless told to)."""
    if not isinstance(data, dict):
        return {}, {"non_field_errors": ["expected an object of fields"]}
    fields = data if creating else {k: v for k, v in data.items() if k not in BUCKET_IMMUTABLE}
    cleaned, errors = validation.clean_values(BUCKET_FIELDS, fields)
    if creating:
        for name in BUCKET_REQUIRED:
            if name not in data:
                errors.setdefault(name, []).append("this field is required")
        if cleaned.get("name") == ROOT:
            errors.setdefault("name", []).append(RESERVED_MESSAGE)
        if "rate" in cleaned:
            cleaned.setdefault("ceil", cleaned["rate"])
        cleaned.setdefault("parent", "")
    return cleaned, errors


def tree_errors(buckets: dict[str, dict]) -> dict[str, dict[str, list[str]]]:
    """Errors of a director's whole bucket tree ({name: {parent, rate, ceil}}), by bucket
    name and field: rate above ceil, a parent that does not exist or forms a cycle, and
    siblings whose rates add up to more than 1 (named on each sibling's `rate`)."""
    errors: dict[str, dict[str, list[str]]] = {}

    def add(name: str, field: str, message: str) -> None:
        errors.setdefault(name, {}).setdefault(field, []).append(message)

    children: dict[str, list[str]] = {}
    for name, bucket in buckets.items():
        if bucket["rate"] > bucket["ceil"]:
            add(name, "rate", f"must be at most ceil ({bucket['ceil']:g})")
        parent = bucket["parent"] or ROOT
        if parent != ROOT and parent not in buckets:
            add(name, "parent", f"unknown bucket {parent!r} (empty for root)")
            continue
        if _in_cycle(name, buckets):
            add(name, "parent", f"{parent!r} would make a cycle: a bucket cannot be below itself")
            continue
        children.setdefault(parent, []).append(name)
    for parent, names in children.items():
        total = sum(buckets[n]["rate"] for n in names)
        if total > 1 + SUM_SLACK:
            where = "root" if parent == ROOT else f"bucket {parent!r}"
            for name in names:
                add(name, "rate", f"the rates of the buckets under {where} add up to {total:g}, more than 1 "
                                  f"({', '.join(sorted(names))})")
    return errors


def _in_cycle(name: str, buckets: dict[str, dict]) -> bool:
    seen = {name}
    walk = buckets[name]["parent"] or ROOT
    while walk != ROOT and walk in buckets:
        if walk in seen:
            return True
        seen.add(walk)
        walk = buckets[walk]["parent"] or ROOT
    return False
