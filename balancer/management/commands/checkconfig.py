"""`manage.py checkconfig [PATH]`: validate a config file, print every error with its key path."""
import os
import sys

from django.core.management.base import BaseCommand

from balancer.config import ConfigError, load_config

DEFAULT_CONFIG = "director.toml"


def default_config_path() -> str:
    return os.environ.get("DIRECTOR_CONFIG") or DEFAULT_CONFIG


class Command(BaseCommand):
    help = "Validate a Director config file; exit 1 and list every error when it is invalid."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="config file (default: $DIRECTOR_CONFIG, else ./director.toml)")

    def handle(self, *args, path=None, **options):
        path = path or default_config_path()
        try:
            config = load_config(path)
        except ConfigError as exc:
            count = len(exc.errors)
            self.stderr.write(f"{path}: {count} error{'s' if count != 1 else ''}")
            for error in exc.errors:
                self.stderr.write(error)
            sys.exit(1)
        self.stdout.write(f"config OK: {len(config.directors)} directors, {len(config.routes)} routes")
