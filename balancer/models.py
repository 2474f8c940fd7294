"""Directors, backends, routes, the config version and the audit log: the control plane's truth.

Only `balancer.services` writes these rows. Value rules live in `balancer.validation`; the
services apply them once per write (the API's serializers and the admin's forms check with
the same rules first, to name the fields), and `clean()` applies them to a model built by hand.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from proxy.addresses import parse_backend_url

from . import route_rules, validation
from .choices import ClientAbort, HealthCheckMode, HealthState, Protocol, Role, Scheduler

_D = validation.DIRECTOR_SETTINGS
_B = validation.BACKEND_FIELDS
NAME_HELP = "1-64 characters: A-Z a-z 0-9 _ . -"


def _rule_errors(obj: models.Model, rules: dict, names) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name in names:
        try:
            rules[name].clean(getattr(obj, name))
        except ValueError as exc:
            errors[name] = [str(exc)]
    return errors


class Director(models.Model):
    """A named cluster of backends with its scheduling, queue, timeout and health settings."""

    name = models.CharField(max_length=64, unique=True, help_text=NAME_HELP)
    dynamic = models.BooleanField(default=True, help_text="dynamic: owned by the database; static: defined in the config file")
    load_path = models.CharField(max_length=4096, blank=True, default="", help_text="x0 `load` file kept in sync")

    enabled = models.BooleanField(default=_D["enabled"].default)
    scheduler = models.CharField(max_length=16, choices=Scheduler.choices, default=_D["scheduler"].default)
    queue_limit = models.IntegerField(default=_D["queue_limit"].default)
    queue_timeout = models.FloatField(default=_D["queue_timeout"].default, help_text="seconds")
    retry_after = models.FloatField(default=_D["retry_after"].default, help_text="seconds; 0 omits Retry-After")
    max_retry_count = models.IntegerField(default=_D["max_retry_count"].default)
    passive_failure_threshold = models.IntegerField(
        default=_D["passive_failure_threshold"].default,
        help_text="consecutive failed live requests that mark a backend offline")
    connect_timeout = models.FloatField(default=_D["connect_timeout"].default, help_text="seconds")
    read_timeout = models.FloatField(default=_D["read_timeout"].default, help_text="seconds")
    write_timeout = models.FloatField(default=_D["write_timeout"].default, help_text="seconds")
    on_client_abort = models.CharField(max_length=16, choices=ClientAbort.choices, default=_D["on_client_abort"].default)
    sticky_offline_mode = models.BooleanField(default=_D["sticky_offline_mode"].default)
    enqueue_on_unavailable = models.BooleanField(default=_D["enqueue_on_unavailable"].default)
    health_check_host_header = models.CharField(max_length=255, default=_D["health_check_host_header"].default)
    health_check_request_path = models.CharField(max_length=1024, default=_D["health_check_request_path"].default)
    health_check_fcgi_script_filename = models.CharField(
        max_length=4096, blank=True, default=_D["health_check_fcgi_script_filename"].default)
    health_check_success_threshold = models.IntegerField(default=_D["health_check_success_threshold"].default)
    health_check_failure_threshold = models.IntegerField(default=_D["health_check_failure_threshold"].default)
    health_check_expected_status = models.CharField(
        max_length=255, default=_D["health_check_expected_status"].default, help_text="e.g. 200, 200-399, 200,204")

    cache_enabled = models.BooleanField(default=_D["cache_enabled"].default)
    cache_deliver_active = models.BooleanField(default=_D["cache_deliver_active"].default,
                                               help_text="answer fresh hits from the cache")
    cache_deliver_shadow = models.BooleanField(default=_D["cache_deliver_shadow"].default,
                                               help_text="answer a 502/503/504 of ours from any stored copy")
    cache_default_ttl = models.FloatField(default=_D["cache_default_ttl"].default, help_text="seconds")
    cache_key = models.CharField(max_length=255, default=_D["cache_key"].default,
                                 help_text="%s scheme, %h Host, %r path, %q query, %% a percent sign")
    cache_max_size = models.BigIntegerField(default=_D["cache_max_size"].default, help_text="bytes per process")
    allow_x_sendfile = models.BooleanField(default=_D["allow_x_sendfile"].default)
    x_sendfile_root = models.CharField(max_length=4096, blank=True, default=_D["x_sendfile_root"].default,
                                       help_text="directory X-Sendfile paths must resolve inside")
    sticky_cookie = models.CharField(max_length=64, blank=True, default=_D["sticky_cookie"].default,
                                     help_text="cookie naming the backend of a session; empty: off")
    slow_start = models.FloatField(default=_D["slow_start"].default,
                                   help_text="seconds over which a returning backend's share grows to full")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def mutable(self) -> bool:
        return self.dynamic

    def settings(self) -> dict:
        """Every SPEC §5 setting by name."""
        return {name: getattr(self, name) for name in _D}

    def clean(self):
        errors = _rule_errors(self, {"name": validation.NAME_RULE, **_D}, ["name", *_D])
        if errors:
            raise ValidationError(errors)


class Backend(models.Model):
    """One upstream server of a director. name, url and protocol never change after creation."""

    director = models.ForeignKey(Director, related_name="backends", on_delete=models.CASCADE)
    name = models.CharField(max_length=64, help_text=NAME_HELP)
    url = models.CharField(max_length=4096, help_text="http://HOST:PORT, https://HOST:PORT, http+unix:///path, fastcgi://HOST:PORT, fastcgi+unix:///path")
    protocol = models.CharField(max_length=16, choices=Protocol.choices, editable=False)
    host = models.CharField(max_length=255, null=True, blank=True, editable=False)
    port = models.IntegerField(null=True, blank=True, editable=False)
    path = models.CharField(max_length=4096, null=True, blank=True, editable=False)
    role = models.CharField(max_length=16, choices=Role.choices, default=_B["role"].default)
    capacity = models.IntegerField(default=_B["capacity"].default, help_text="concurrent requests; 0 = unlimited")
    enabled = models.BooleanField(default=_B["enabled"].default)
    health_check_mode = models.CharField(max_length=16, choices=HealthCheckMode.choices, default=_B["health_check_mode"].default)
    health_check_interval = models.FloatField(default=_B["health_check_interval"].default, help_text="seconds")
    terminate_protection = models.BooleanField(default=_B["terminate_protection"].default)
    tls_verify = models.BooleanField(default=_B["tls_verify"].default, help_text="https: verify the certificate")
    tls_ca_file = models.CharField(max_length=4096, blank=True, default=_B["tls_ca_file"].default,
                                   help_text="https: absolute path of a PEM CA file; empty = the system store")
    tls_server_name = models.CharField(max_length=255, blank=True, default=_B["tls_server_name"].default,
                                       help_text="https: SNI and the name to verify; empty = the URL's host")
    terminating = models.BooleanField(default=False, editable=False, help_text="draining: removed once idle")
    position = models.IntegerField(default=0, help_text="order within the director")
    health_state = models.CharField(max_length=16, choices=HealthState.choices, default=HealthState.UNDEFINED, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    last_checked = models.DateTimeField(null=True, blank=True, editable=False)
    health_changed_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)  # health poll
    last_check_ok = models.BooleanField(null=True, blank=True, editable=False, help_text="result of the last check")
    last_check_status = models.IntegerField(null=True, blank=True, editable=False,
                                            help_text="HTTP status of the last check (none: no answer)")
    last_check_duration = models.FloatField(null=True, blank=True, editable=False, help_text="seconds")
    downtime = models.FloatField(default=0.0, editable=False,
                                 help_text="seconds spent offline before the current state")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["director", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["director", "name"], name="backend_unique_name_per_director")]

    def __str__(self) -> str:
        return f"{self.director.name}/{self.name}" if self.director_id else self.name

    def derive_address(self) -> None:
        """Set protocol/host/port/path from url (ValueError when the url is invalid)."""
        address = parse_backend_url(self.url)
        self.protocol, self.host, self.port, self.path = address.protocol, address.host, address.port, address.path

    def clean(self):
        # The TLS fields are checked when sent (services.clean_backend), not here: a CA file
        # removed later must not block enabling or disabling the backend.
        names = ["name", "url", "role", "capacity", "enabled", "health_check_mode",
                 "health_check_interval", "terminate_protection", "position"]
        errors = _rule_errors(self, _B, names)
        if errors:
            raise ValidationError(errors)
        self.derive_address()


class HealthTransition(models.Model):
    """One change of a backend's health state; the last TRANSITIONS_KEPT per backend are kept."""

    backend = models.ForeignKey(Backend, related_name="transitions", on_delete=models.CASCADE)
    at = models.DateTimeField()
    old_state = models.CharField(max_length=16, choices=HealthState.choices)
    new_state = models.CharField(max_length=16, choices=HealthState.choices)
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["backend", "-at"], name="transition_backend_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.old_state} -> {self.new_state}"


TRANSITIONS_KEPT = 10

class Bucket(models.Model):
    """A share of a director's capacity (SPEC §15 buckets, x0's HTB TokenShaper). `parent` is
    another bucket's name of the same director, or "" for the implicit `root`."""

    director = models.ForeignKey(Director, related_name="buckets", on_delete=models.CASCADE)
    name = models.CharField(max_length=64, help_text=NAME_HELP)
    parent = models.CharField(max_length=64, blank=True, default="", help_text="parent bucket; empty: root")
    rate = models.FloatField(help_text="assured share of the parent, 0-1")
    ceil = models.FloatField(help_text="most of the parent it may borrow up to, rate-1")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["director", "id"]
        constraints = [models.UniqueConstraint(fields=["director", "name"], name="bucket_unique_name_per_director")]

    def __str__(self) -> str:
        return f"{self.director.name}/{self.name}"


_R = route_rules.ROUTE_TEXT_LIMITS


class Route(models.Model):
    """Maps requests (host, path prefix) to one action: pass to a director, or straight to one
    address (road warrior http / fcgi). Text fields hold "" where the route sets nothing.

    `mutable` false: the route comes from the config file (`file_index` is its position in the
    file's [[routes]]) and only the config sync changes it.
    """

    priority = models.IntegerField(null=True, blank=True, help_text="lower first; empty: a file route in file order, before all others")
    host = models.CharField(max_length=_R["host"], blank=True, default="", help_text="exact host; empty = any host")
    path = models.CharField(max_length=_R["path"], default="/", help_text="plain prefix, forwarded unchanged")
    director = models.CharField("pass", max_length=_R["pass"], blank=True, default="", help_text="director name")
    backend_from = models.CharField(max_length=_R["backend_from"], blank=True, default="",
                                    help_text="cookie:NAME or header:NAME (with pass)")
    http = models.CharField(max_length=_R["http"], blank=True, default="", help_text="road warrior HTTP: HOST:PORT, [V6]:PORT, unix:/path")
    fcgi = models.CharField(max_length=_R["fcgi"], blank=True, default="",
                            help_text="road warrior FastCGI: HOST:PORT, [V6]:PORT, unix:/path")
    document_root = models.CharField(max_length=_R["document_root"], blank=True, default="")
    script_filename = models.CharField(max_length=_R["script_filename"], blank=True, default="")
    bucket = models.CharField(max_length=64, blank=True, default="", help_text="bucket of the director (with pass)")
    bucket_from = models.CharField(max_length=200, blank=True, default="",
                                   help_text="cookie:NAME or header:NAME naming the bucket (with pass)")
    mutable = models.BooleanField(default=True, editable=False, help_text="false: from the config file")
    file_index = models.IntegerField(null=True, blank=True, editable=False, help_text="position in the config file's [[routes]]")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Match order (SPEC §11): file routes without a priority first, in file order; then by
        # priority (a file route before a database route of the same priority), oldest first.
        ordering = [models.F("priority").asc(nulls_first=True), "mutable", "file_index", "id"]
        constraints = [models.UniqueConstraint(fields=["file_index"], condition=models.Q(mutable=False),
                                               name="route_one_file_route_per_position")]

    def __str__(self) -> str:
        action = f"pass {self.director}" if self.director else (f"http {self.http}" if self.http else f"fcgi {self.fcgi}")
        return f"{self.host or '*'}{self.path} -> {action}"

    @property
    def source(self) -> str:
        return "API or admin" if self.mutable else f"config file routes[{self.file_index}]"


class ConfigVersion(models.Model):
    """One row; its version rises with every config or health-state change."""

    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"config version {self.version}"


def current_version() -> int:
    return ConfigVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0


class AuditRecord(models.Model):
    """Who changed what, when, with the object before and after (JSON). Never edited."""

    at = models.DateTimeField(editable=False, db_index=True)
    actor = models.CharField(max_length=200, editable=False)
    action = models.CharField(max_length=64, editable=False)
    director_name = models.CharField(max_length=64, editable=False)
    backend_name = models.CharField(max_length=64, blank=True, default="", editable=False)
    before = models.JSONField(null=True, editable=False)
    after = models.JSONField(null=True, editable=False)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        target = self.director_name + (f"/{self.backend_name}" if self.backend_name else "")
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {target}"
