"""The channel-layer names every process of one Director agrees on (one home for them).

Groups are prefixed by the channel layer itself (`director_site.environment.channel_layers`
gives channels_redis the Director's prefix), so two Directors sharing one Redis never hear
each other. A named channel is not, so HEALTH_CHANNEL carries the prefix itself.
"""
from __future__ import annotations

import re

from director_site.environment import channel_prefix

CONFIG_GROUP = "director.config"  # "config.changed": reload the configuration
HEALTH_GROUP = "director.health"  # "health.changed": a stored health transition
REPORTS_GROUP = "director.health.reports"  # passive failures and activity, heard by every monitor
CACHE_GROUP = "director.cache"  # "cache.purge": another process accepted a PURGE

CONFIG_CHANGED = "config.changed"
HEALTH_CHANGED = "health.changed"
BACKEND_FAILED = "backend.failed"
BACKEND_ACTIVITY = "backend.activity"
CACHE_PURGE = "cache.purge"


def health_channel(prefix: str | None = None) -> str:
    """The named channel `manage.py healthworker` consumes (channel names allow no ':')."""
    return re.sub(r"[^A-Za-z0-9._-]", ".", prefix or channel_prefix()) + ".health-worker"
