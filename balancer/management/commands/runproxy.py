"""`manage.py runproxy`: serve traffic and management on daphne from one process (SPEC §2, §11).

The process an operator signals writes `<data dir>/runproxy.pid`: the single runproxy, or
the supervisor under `--workers`. SIGHUP reloads the config file (in place here, by
replacing workers one at a time under a supervisor); SIGTERM and SIGINT drain and stop.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the proxy (traffic listeners) and the management listener on daphne."
    requires_system_checks = []

    def get_version(self) -> str:
        from director_site.version import describe

        return describe()

    def add_arguments(self, parser):
        parser.add_argument("--config", default=None, help="config file (default $DIRECTOR_CONFIG, else ./director.toml)")
        parser.add_argument("--listen", action="append", default=None, metavar="ADDR",
                            help="traffic listener HOST:PORT, [V6]:PORT or unix:/path (repeatable; default 127.0.0.1:8080)")
        parser.add_argument("--admin-listen", default=None, metavar="ADDR", help="management listener (default 127.0.0.1:8081)")
        parser.add_argument("--workers", type=int, default=None, help="processes serving the listeners (default 1)")
        parser.add_argument("--no-health-monitor", action="store_true", help="do not run health checks in this process")

    def handle(self, *args, **options):
        # SIGUSR1 (logrotate's reopen) must never kill a process still starting: ignored
        # until the server's loop handles it (a supervisor passes it on to its workers).
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        from proxy.twisted_compat import AdapterMismatch  # names no reactor: safe before proxy.server

        try:  # first: daphne installs Twisted's asyncio reactor on import; then the adapter is checked
            from proxy import server as proxy_server
        except AdapterMismatch as exc:
            self._fail(str(exc))

        from balancer import admin_hosts
        from balancer.reload import ReloadError, config_path
        from balancer.worker_stats import worker_index
        from proxy.service import StartupError

        path = config_path(options["config"])
        overrides = {"listen": options["listen"], "admin_listen": options["admin_listen"],
                     "workers": options["workers"]}
        supervisor = server = None
        try:
            config, settings = _read(path, overrides)
            admin_hosts.apply(settings)
            if settings.workers > 1 and worker_index() is None:
                supervisor = self._supervisor(path, overrides, config, settings)
            else:
                server = self._prepare(path, overrides, options, config, settings, proxy_server)
        except ReloadError as exc:
            more = len(exc.errors) - 1
            self._fail(f"invalid config {path}: {exc.errors[0]}"
                       + (f" (and {more} more; run manage.py checkconfig)" if more else ""))
        except (StartupError, ImproperlyConfigured, proxy_server.ListenError) as exc:
            self._fail(str(exc))
        if supervisor is not None:
            with _pid_file():
                code = supervisor.run()
            supervisor.listeners.close()
            sys.exit(code)
        try:
            if worker_index() is None:
                with _pid_file():
                    server.run()
            else:
                server.run()
        except proxy_server.ListenError as exc:
            self._fail(str(exc))

    def _fail(self, message: str):
        self.stderr.write(f"runproxy: {message}")
        sys.stderr.flush()
        sys.exit(1)

    @staticmethod
    def _serving(settings, path: str) -> str:
        listening = ", ".join(str(a) for a in settings.listen)
        return f"{listening} (management http://{settings.admin_listen}/admin/), config {path}"

    def _supervisor(self, path, overrides, config, settings):
        """`--workers N`: bind the listeners here and run N copies of this command on them."""
        from django.conf import settings as django_settings
        from django.db import connections

        from balancer.reload import store_config
        from proxy.listeners import ListenerSockets, ensure_not_served
        from proxy.service import StartupError
        from proxy.supervisor import Supervisor

        if not os.environ.get("REDIS_URL"):
            raise StartupError(f"workers = {settings.workers} needs REDIS_URL: the workers share health "
                               "reports and config pushes through Redis")
        away = _database_away()
        addresses = [*settings.listen, settings.admin_listen]
        ensure_not_served(addresses)
        if away is None:
            store_config(config)
        listeners = ListenerSockets(addresses, settings.workers)
        connections.close_all()  # the workers open their own
        workers_dir = Path(django_settings.DATA_DIR) / "workers" / str(os.getpid())
        self.stdout.write(f"Director serving {self._serving(settings, path)} with {settings.workers} workers")
        self.stdout.flush()
        return Supervisor([sys.executable, *sys.argv], settings.workers, listeners, workers_dir,
                          reader=lambda: _read(path, overrides), storer=_store_for_supervisor,
                          shutdown_timeout=settings.shutdown_timeout, unstored=config if away else None)

    def _prepare(self, path, overrides, options, config, settings, proxy_server):
        """One serving process: the whole of runproxy, or one worker of a supervisor."""
        import asyncio

        from balancer import livestats, worker_stats
        from balancer.assemble import proxy_service
        from balancer.live_reload import InProcessReload
        from balancer.reload import store_config
        from director_site.asgi import application as management_app
        from proxy.gc_tuning import settle_heap
        from proxy.supervisor import inherited_sockets, report_ready, stop_with_supervisor

        index = worker_stats.worker_index()
        away = _database_away()
        if index is None and away is None:
            store_config(config)  # a supervisor has done it once for all its workers
        # Started without the database: the file is stored once it answers (a supervisor
        # does that for its workers).
        stored_later = (lambda: store_config(config)) if index is None and away else None
        monitor = settings.health_monitor and not options["no_health_monitor"] and index in (None, 0)
        service = proxy_service(settings, health_monitor=monitor, snapshot=_snapshot(), on_database_back=stored_later)
        traffic_app = service.traffic_app()
        who = "Director" if index is None else f"Director worker {index}"

        def ready(server):
            from twisted.internet import defer, reactor

            loop = asyncio.get_event_loop()
            loop.create_task(service.start_background())
            service.hear_reopen(loop)  # SIGUSR1, logrotate's; a supervisor forwards it
            if index is None:
                reloader = InProcessReload(path, overrides, settings, service, server, traffic_app)
                loop.add_signal_handler(signal.SIGHUP, reloader.request)
            else:
                loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor reloads the group
                loop.create_task(worker_stats.publish_forever(worker_stats.directory(), index, livestats.local_figures))
                loop.create_task(stop_with_supervisor(server.stop))
            # "during": after the server has drained its requests ("before"), which still need them
            reactor.addSystemEventTrigger(
                "during", "shutdown", lambda: defer.Deferred.fromFuture(loop.create_task(service.stop_background())))
            self.stdout.write(f"{who} serving {self._serving(settings, path)}, "
                              f"{len(service.plane.directors)} directors, {len(service.plane.routes)} routes")
            self.stdout.flush()
            settle_heap()
            report_ready()

        return proxy_server.build_server(
            traffic_app=traffic_app,
            management_app=management_app,
            traffic_listen=list(settings.listen),
            management_listen=[settings.admin_listen],
            max_request_body=settings.max_request_body,
            header_timeout=settings.header_timeout,
            ready_callback=ready,
            server_name=settings.pseudonym,
            sockets=inherited_sockets(),
            shutdown_timeout=settings.shutdown_timeout,
            tls_certificates=settings.load_tls(),
        )


def _read(path: str, overrides: dict):
    from balancer.reload import read_config

    return read_config(path, overrides)


def _store_for_supervisor(config) -> None:
    """A supervisor's reload stores the file once for the workers it is about to start."""
    from django.db import connections

    from balancer.reload import store_config

    try:
        try:
            _check_database()
        except _Unreachable as exc:
            raise RuntimeError(str(exc)) from None
        store_config(config, reload=True)
    finally:
        connections.close_all()


class _pid_file:
    """`<data dir>/runproxy.pid` for as long as this process serves."""

    def __enter__(self):
        from django.conf import settings as django_settings

        from proxy import pidfile

        self.path = pidfile.path_in(django_settings.DATA_DIR)
        pidfile.write(self.path)
        return self

    def __exit__(self, *exc_info):
        from proxy import pidfile

        pidfile.remove(self.path)


def _snapshot():
    from django.conf import settings as django_settings

    from proxy.snapshot import SnapshotStore

    return SnapshotStore.in_directory(django_settings.DATA_DIR)


def _database_away() -> str | None:
    """None when the database answers; why not, when it does not but a configuration
    snapshot lets this process serve without it (SPEC §11); else StartupError."""
    from proxy.service import StartupError

    try:
        _check_database()
    except _Unreachable as exc:
        if _snapshot().load() is None:
            raise StartupError(str(exc)) from None
        return str(exc)
    return None


class _Unreachable(Exception):
    pass


def _check_database() -> None:
    """Reachable and migrated, or one clear line (`_Unreachable` is a StartupError's text)."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    from proxy.service import StartupError

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises means unreachable
        detail = " ".join(str(exc).split())  # drivers' messages span lines (psycopg adds a hint)
        raise _Unreachable(f"database unreachable ({connection.settings_dict['ENGINE'].rsplit('.', 1)[-1]}): {detail}") from None
    if pending:
        raise StartupError("database is not migrated: run `python manage.py migrate`")
