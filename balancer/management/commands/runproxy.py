"""`manage.py runproxy`: serve traffic and management on daphne from one process (SPEC §2)."""
from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the proxy (traffic listeners) and the management listener on daphne."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--config", default=None, help="config file (default $DIRECTOR_CONFIG, else ./director.toml)")
        parser.add_argument("--listen", action="append", default=None, metavar="ADDR",
                            help="traffic listener HOST:PORT, [V6]:PORT or unix:/path (repeatable; default 127.0.0.1:8080)")
        parser.add_argument("--admin-listen", default=None, metavar="ADDR", help="management listener (default 127.0.0.1:8081)")
        parser.add_argument("--workers", type=int, default=None, help="processes serving the listeners (default 1)")
        parser.add_argument("--no-health-monitor", action="store_true", help="do not run health checks in this process")

    def handle(self, *args, **options):
        # Imported first: daphne installs Twisted's asyncio reactor on import.
        from proxy import server as proxy_server

        from balancer.config import ConfigError
        from proxy.service import StartupError

        try:
            service, server = self._prepare(options, proxy_server)
        except ConfigError as exc:
            self._fail(f"invalid config {self._config_path(options)}: {exc.errors[0]}"
                       + (f" (and {len(exc.errors) - 1} more; run manage.py checkconfig)" if len(exc.errors) > 1 else ""))
        except (StartupError, ImproperlyConfigured) as exc:
            self._fail(str(exc))
        try:
            server.run()
        except proxy_server.ListenError as exc:
            self._fail(str(exc))

    @staticmethod
    def _config_path(options) -> str:
        return options["config"] or os.environ.get("DIRECTOR_CONFIG") or "director.toml"

    def _fail(self, message: str):
        self.stderr.write(f"runproxy: {message}")
        sys.stderr.flush()
        sys.exit(1)

    def _prepare(self, options, proxy_server):
        import asyncio

        from balancer.conf import ProxySettings
        from balancer.config import load_config
        from balancer.sync import sync_config
        from director_site.asgi import application as management_app
        from proxy.service import ProxyService, StartupError

        path = self._config_path(options)
        if not os.path.exists(path):
            raise StartupError(f"config file {path} not found (copy director.example.toml)")
        config = load_config(path)
        settings = ProxySettings.build(config.proxy, {
            "listen": options["listen"], "admin_listen": options["admin_listen"], "workers": options["workers"],
        })
        if settings.workers != 1:
            raise StartupError(f"workers = {settings.workers}: this version serves with exactly 1 worker process")
        _check_database()
        sync_config(config)
        monitor = settings.health_monitor and not options["no_health_monitor"]
        service = ProxyService(config, settings, health_monitor=monitor)
        service.load_initial_state()

        def ready(server):
            from twisted.internet import defer, reactor

            loop = asyncio.get_event_loop()
            loop.create_task(service.start_background())
            reactor.addSystemEventTrigger(
                "before", "shutdown", lambda: defer.Deferred.fromFuture(loop.create_task(service.stop_background())))
            listening = ", ".join(str(a) for a in settings.listen)
            self.stdout.write(
                f"Director serving {listening} (management http://{settings.admin_listen}/admin/), "
                f"config {path}, {len(service.plane.directors)} directors, {len(service.plane.routes)} routes")
            self.stdout.flush()

        server = proxy_server.build_server(
            traffic_app=service.traffic_app(),
            management_app=management_app,
            traffic_listen=list(settings.listen),
            management_listen=[settings.admin_listen],
            max_request_body=settings.max_request_body,
            header_timeout=settings.header_timeout,
            ready_callback=ready,
            server_name=settings.pseudonym,
        )
        return service, server


def _check_database() -> None:
    """Reachable and migrated, or one clear line."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    from proxy.service import StartupError

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        detail = " ".join(str(exc).split())  # drivers' messages span lines (psycopg adds a hint)
        raise StartupError(f"database unreachable ({connection.settings_dict['ENGINE'].rsplit('.', 1)[-1]}): {detail}") from None
    if pending:
        raise StartupError("database is not migrated: run `python manage.py migrate`")
