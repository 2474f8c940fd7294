"""`manage.py createapitoken USER [--viewer] [--existing]`: an API token for USER.

stdout carries only the token key, so scripts can do `TOKEN=$(manage.py createapitoken ci)`;
everything else goes to stderr. Running it again prints the same key and sets the role
given now (operator, or viewer with --viewer). A user that does not exist is created (SPEC
§2), never silently: stderr says so in a line of its own, so a mistyped name is seen at
once; `--existing` refuses an unknown name instead (exit 1), for scripts that only mean to
grant rights.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from balancer.permissions import grant_role


class Command(BaseCommand):
    help = "Give USER (created if missing, unless --existing) operator (or --viewer: read-only) API rights, print its token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--viewer", action="store_true", help="read-only rights instead of operator")
        parser.add_argument("--existing", action="store_true", help="refuse a USER that does not exist instead of creating it")

    def handle(self, *args, username: str, viewer: bool, existing: bool, **options):
        user_model = get_user_model()
        try:
            user_model._meta.get_field(user_model.USERNAME_FIELD).run_validators(username)
        except ValidationError as exc:
            raise CommandError(f"invalid user name {username!r}: {' '.join(exc.messages)}") from None
        role = "viewer" if viewer else "operator"
        with transaction.atomic():
            if existing:
                user, created = _existing(user_model, username), False
            else:
                user, created = user_model.objects.get_or_create(**{user_model.USERNAME_FIELD: username})
            if created:
                user.set_unusable_password()  # API only; an admin login needs a password set separately
                user.save(update_fields=["password"])
            grant_role(user, role)
            token, _ = Token.objects.get_or_create(user=user)
        if created:
            self.stderr.write(f"createapitoken: there was no user {username!r}: created it, with {role} rights")
        else:
            self.stderr.write(f"existing user {username!r} has {role} rights")
        self.stdout.write(token.key)


def _existing(user_model, username: str):
    try:
        return user_model.objects.get(**{user_model.USERNAME_FIELD: username})
    except user_model.DoesNotExist:
        raise CommandError(f"no user {username!r}: check the name, or leave out --existing to create it") from None
