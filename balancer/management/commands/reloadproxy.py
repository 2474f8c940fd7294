"""`manage.py reloadproxy`: SIGHUP to the runproxy named by `<data dir>/runproxy.pid` (SPEC §11)."""
from __future__ import annotations

import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from proxy import pidfile


class Command(BaseCommand):
    help = "Ask the running runproxy to re-read its config file (the same as kill -HUP <pid>)."
    requires_system_checks = []

    def handle(self, *args, **options):
        path = pidfile.path_in(settings.DATA_DIR)
        try:
            pid = pidfile.running_pid(path)
            os.kill(pid, signal.SIGHUP)
        except pidfile.PidFileError as exc:
            raise CommandError(f"reloadproxy: {exc}") from None
        except PermissionError:
            raise CommandError(f"reloadproxy: not allowed to signal process {pid} (pid file {path})") from None
        self.stdout.write(f"reload requested from runproxy pid {pid}; its log says whether the file was applied")
