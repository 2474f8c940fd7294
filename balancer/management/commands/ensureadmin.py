"""`manage.py ensureadmin`: make sure the superuser "admin" exists, never with a fixed password.

The password comes from DIRECTOR_ADMIN_PASSWORD (checked by AUTH_PASSWORD_VALIDATORS: a weak
one is refused with the validators' reasons, exit 1), else one is generated and printed once.
"""
import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from balancer.conf import director_settings
from balancer.config import ConfigError, load_config

from .checkconfig import default_config_path

USERNAME = "admin"
PASSWORD_ENV = "DIRECTOR_ADMIN_PASSWORD"


def admin_url() -> str:
    """Where the admin is served: the config file's admin_listen, else the DIRECTOR setting."""
    address = str(director_settings.admin_listen)
    try:
        address = load_config(default_config_path()).proxy.get("admin_listen", address)
    except ConfigError:
        pass
    if address.startswith("unix:"):
        return f"/admin/ on {address}"
    return f"http://{address}/admin/"


class Command(BaseCommand):
    help = f"Create the superuser {USERNAME!r} if missing (password: ${PASSWORD_ENV} or generated and printed once)."

    def handle(self, *args, **options):
        password = os.environ.get(PASSWORD_ENV)
        user = get_user_model().objects.filter(username=USERNAME).first()
        if password:
            _check(password, user)
        if user is None:
            generated = secrets.token_urlsafe(12) if not password else None
            get_user_model().objects.create_superuser(USERNAME, email="", password=password or generated)
            shown = generated if generated else f"(password from {PASSWORD_ENV})"
            self.stdout.write(f"admin login: {USERNAME} / {shown} at {admin_url()}")
        elif password:
            user.set_password(password)
            user.is_active = user.is_staff = user.is_superuser = True
            user.save()
            self.stdout.write(f"admin login: {USERNAME}: password set from {PASSWORD_ENV}; {admin_url()}")
        else:
            self.stdout.write(f"admin login {USERNAME!r} exists ({admin_url()}); "
                              f"to reset its password: python manage.py changepassword {USERNAME}")


def _check(password: str, user) -> None:
    try:
        validate_password(password, user or get_user_model()(username=USERNAME))
    except ValidationError as exc:
        raise CommandError(f"{PASSWORD_ENV} refused: {' '.join(exc.messages)}") from None
