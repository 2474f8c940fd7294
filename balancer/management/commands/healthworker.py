"""`manage.py healthworker`: health monitoring as its own process (SPEC §8, DESIGN "Health").

For deployments where `runproxy --no-health-monitor` serves traffic and one process per
cluster checks the backends. It checks every backend, takes `director-health` messages
(passive failures and activity from the proxies, config pushes) from the configured channel
layer — Redis when REDIS_URL is set — logs every transition, and stops on SIGTERM or SIGINT.
"""
from __future__ import annotations

import asyncio
import logging
import signal

import uvloop
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from balancer.health.monitor import HealthMonitor
from balancer.health.worker import HEALTH_CHANNEL, serve

log = logging.getLogger("director.health")
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


class Command(BaseCommand):
    help = "Run the health monitor until SIGTERM (pair with runproxy --no-health-monitor and REDIS_URL)."

    def handle(self, *args, **options):
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as runproxy's loop:
                runner.run(self._run())  # connects and reads in C (bench/health.py: a quarter less CPU)
        except CommandError:
            raise
        except Exception as exc:  # one clear line instead of a traceback (database down, ...)
            raise CommandError(f"healthworker: {type(exc).__name__}: {exc}") from exc

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND") == IN_MEMORY_LAYER:
            log.warning("healthworker: in-process channel layer (REDIS_URL unset): "
                        "proxies in other processes cannot report to it")
        monitor = HealthMonitor()
        await monitor.start()
        log.info("healthworker: checking %d backends, listening on channel %s", len(monitor.stats()), HEALTH_CHANNEL)
        worker = asyncio.ensure_future(serve(monitor))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({worker, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (worker, stopping):
                task.cancel()
            results = await asyncio.gather(worker, stopping, return_exceptions=True)
            await monitor.stop()
        failure = results[0]
        if isinstance(failure, Exception):
            raise CommandError(f"healthworker: channel layer failed: {failure}")
        log.info("healthworker: stopped")
