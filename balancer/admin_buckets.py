"""Buckets on the director's admin page (SPEC §15 "Buckets"): an inline of name, parent,
rate and ceil. Saves go through `balancer.bucket_services` (audited, version bumped); the
field rules show on the fields, the tree rules (siblings' rates, parent, cycle) as messages
naming the bucket. A static director's buckets come from the config file: read-only here.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from . import bucket_rules, bucket_services
from .models import Bucket, Director
from .services import ServiceError

FIELDS = ["name", "parent", "rate", "ceil"]


def _static(director: Director | None) -> bool:
    return director is not None and director.pk is not None and not director.dynamic


class BucketForm(forms.ModelForm):
    class Meta:
        model = Bucket
        fields = FIELDS

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        creating = self.instance.pk is None
        values = {name: cleaned[name] for name in FIELDS if name in cleaned and cleaned[name] is not None}
        values.setdefault("parent", "")
        _, errors = bucket_rules.clean_bucket(values, creating=creating)
        for field, field_messages in errors.items():
            for message in field_messages:
                self.add_error(field if field in self.fields else None, message)
        return cleaned

    def values(self, names) -> dict:
        return {name: self.cleaned_data[name] for name in names if name in self.cleaned_data}


class BucketInline(admin.TabularInline):
    model = Bucket
    form = BucketForm
    fields = FIELDS
    extra = 0

    def get_readonly_fields(self, request, obj=None):
        return FIELDS if _static(obj) else []

    def has_add_permission(self, request, obj=None):
        return not _static(obj) and super().has_add_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not _static(obj) and super().has_delete_permission(request, obj)


def save_bucket_formset(request, director: Director, formset, actor: str) -> None:
    """Deletions first, then changes and new buckets in the page's order (a parent above its
    children); a refused one is an error message naming the bucket, the others still save."""
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for form in formset.deleted_forms:
        if form.instance.pk is not None:
            with _as_message(request, form.instance.name):
                bucket_services.delete_bucket(form.instance, actor=actor)
                formset.deleted_objects.append(form.instance)
    for form in formset.forms:
        if form in formset.deleted_forms or not form.has_changed():
            continue
        with _as_message(request, form.cleaned_data.get("name") or form.instance.name):
            if form.instance.pk is None:
                formset.new_objects.append(bucket_services.create_bucket(director, form.values(FIELDS), actor=actor))
            else:
                changes = form.values([name for name in form.changed_data if name in FIELDS])
                formset.changed_objects.append((bucket_services.update_bucket(form.instance, changes, actor=actor),
                                                list(changes)))


class _as_message:
    def __init__(self, request, name: str):
        self.request, self.name = request, name

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, ServiceError):
            messages.error(self.request, f"bucket {self.name}: {exc}")
            return True
        return False
