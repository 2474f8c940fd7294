"""The only writer of buckets (SPEC §15 "Buckets"), on the same path as every other write
(`balancer.services`): validate (`balancer.bucket_rules`, the tree the write would leave),
lock the director, save, audit (`bucket.create|update|delete`, the bucket's JSON before and
after), bump the config version so the data plane reloads, announce it on commit.

Buckets of a static director come from the config file: only the config sync writes them
(`allow_static`, `replace_buckets`); the API and the admin get 403.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction

from . import bucket_rules
from .models import Bucket, Director
from .services import (
    IMMUTABLE_MESSAGE,
    Conflict,
    NotFound,
    ValidationFailed,
    _audit,
    _bump_version,
    _locked_director,
    _require_mutable,
    apply_changes,
)

TREE_FIELDS = ("parent", "rate", "ceil")


def bucket_json(bucket: Bucket) -> dict:
    return {"name": bucket.name, "parent": bucket.parent, "rate": bucket.rate, "ceil": bucket.ceil}


def _tree(director: Director) -> dict[str, dict]:
    return {b.name: {f: getattr(b, f) for f in TREE_FIELDS} for b in director.buckets.all()}


def _check_tree(tree: dict[str, dict], name: str) -> None:
    """ValidationFailed with the errors the tree has for bucket `name` (its fields)."""
    errors = bucket_rules.tree_errors(tree).get(name)
    if errors:
        raise ValidationFailed(errors)


def _cleaned(data, *, creating: bool) -> dict:
    cleaned, errors = bucket_rules.clean_bucket(data, creating=creating)
    if errors:
        raise ValidationFailed(errors)
    return cleaned


def create_bucket(director: Director, data: dict, *, actor: str, allow_static: bool = False) -> Bucket:
    cleaned = _cleaned(data, creating=True)
    with transaction.atomic():
        locked = _locked_director(director.pk)
        _require_mutable(locked, allow_static)
        tree = _tree(locked)
        if cleaned["name"] in tree:
            raise Conflict(f"bucket {cleaned['name']!r} already exists in director {locked.name!r}")
        tree[cleaned["name"]] = {f: cleaned[f] for f in TREE_FIELDS}
        _check_tree(tree, cleaned["name"])
        bucket = Bucket(director=locked, **cleaned)
        try:
            with transaction.atomic():
                bucket.save()
        except IntegrityError:
            raise Conflict(f"bucket {bucket.name!r} already exists in director {locked.name!r}") from None
        _audit(actor, "bucket.create", locked.name, after=bucket_json(bucket))
        _bump_version(locked)
    return bucket


def update_bucket(bucket: Bucket, changes: dict, *, actor: str, allow_static: bool = False) -> Bucket:
    if isinstance(changes, dict) and "name" in changes and changes["name"] != bucket.name:
        raise ValidationFailed({"name": [IMMUTABLE_MESSAGE]})
    cleaned = _cleaned(changes, creating=False)
    with transaction.atomic():
        locked_director = _locked_director(bucket.director_id)
        _require_mutable(locked_director, allow_static)
        locked = _locked_bucket(bucket.pk)
        tree = _tree(locked_director)
        tree[locked.name].update({f: cleaned[f] for f in TREE_FIELDS if f in cleaned})
        _check_tree(tree, locked.name)
        changed = apply_changes(locked, cleaned, bucket_json)
        if changed is not None:
            _audit(actor, "bucket.update", locked_director.name, before=changed[0], after=changed[1])
            _bump_version(locked_director)
    return locked


def delete_bucket(bucket: Bucket, *, actor: str, allow_static: bool = False) -> None:
    """Delete a bucket without children (its requests use root from then on)."""
    with transaction.atomic():
        locked_director = _locked_director(bucket.director_id)
        _require_mutable(locked_director, allow_static)
        locked = _locked_bucket(bucket.pk)
        children = sorted(locked_director.buckets.filter(parent=locked.name).values_list("name", flat=True))
        if children:
            raise Conflict(f"bucket {locked.name!r} has child buckets ({', '.join(children)}): "
                           "delete or move them first", field="name")
        before = bucket_json(locked)
        locked.delete()
        _audit(actor, "bucket.delete", locked_director.name, before=before)
        _bump_version(locked_director)


def replace_buckets(director: Director, wanted: dict[str, dict], *, actor: str) -> None:
    """Make a director's buckets exactly `wanted` ({name: cleaned fields}, a tree the caller
    checked whole: the config sync). Unchanged buckets are not touched."""
    with transaction.atomic():
        locked = _locked_director(director.pk)
        stored = {b.name: b for b in locked.buckets.select_for_update()}
        changed = False
        for name, bucket in stored.items():
            if name not in wanted:
                _audit(actor, "bucket.delete", locked.name, before=bucket_json(bucket))
                bucket.delete()
                changed = True
        for name, fields in wanted.items():
            bucket = stored.get(name)
            if bucket is None:
                bucket = Bucket.objects.create(director=locked, name=name, **{f: fields[f] for f in TREE_FIELDS})
                _audit(actor, "bucket.create", locked.name, after=bucket_json(bucket))
                changed = True
                continue
            before = bucket_json(bucket)
            for field in TREE_FIELDS:
                setattr(bucket, field, fields[field])
            if bucket_json(bucket) != before:
                bucket.save()
                _audit(actor, "bucket.update", locked.name, before=before, after=bucket_json(bucket))
                changed = True
        if changed:
            _bump_version(locked)


def _locked_bucket(pk: int) -> Bucket:
    try:
        return Bucket.objects.select_for_update().get(pk=pk)
    except Bucket.DoesNotExist:
        raise NotFound("bucket not found") from None
