"""Health monitoring (SPEC §8): per-backend sessions, probes, the monitor and its worker.

`HealthMonitor` (balancer.health.monitor) runs one asyncio task per backend on the caller's
loop; `runproxy` starts it in-process, `manage.py healthworker` runs it standalone.
"""
