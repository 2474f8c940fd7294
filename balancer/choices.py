"""Enumerated values of director and backend fields (SPEC §5, §6, §8)."""
from django.db import models


class Scheduler(models.TextChoices):
    RR = "rr", "round robin"
    CHANCE = "chance", "chance (fill in order)"
    LEAST_LOAD = "least_load", "least load"


class ClientAbort(models.TextChoices):
    CLOSE = "close", "close"
    NOTIFY = "notify", "notify (FastCGI abort)"
    IGNORE = "ignore", "ignore"


class Role(models.TextChoices):
    ACTIVE = "active", "active"
    BACKUP = "backup", "backup"


class Protocol(models.TextChoices):
    HTTP = "http", "HTTP"
    FASTCGI = "fastcgi", "FastCGI"


class HealthCheckMode(models.TextChoices):
    PARANOID = "paranoid", "paranoid"
    OPPORTUNISTIC = "opportunistic", "opportunistic"
    LAZY = "lazy", "lazy"


class HealthState(models.TextChoices):
    UNDEFINED = "undefined", "undefined"
    ONLINE = "online", "online"
    OFFLINE = "offline", "offline"
