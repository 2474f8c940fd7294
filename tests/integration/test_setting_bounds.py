"""One rule set bounds every duration and count and refuses unsafe text (SPEC §5, §9), and the
API, the admin, the config file and the x0 import all apply it: a value with a control
character, a non-ASCII health-check Host or an absurd number is refused naming the field."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from balancer import validation
from balancer.config import ConfigError, parse_config
from balancer.models import Director
from tests.integration.test_admin import DIRECTORS, director_post
from tests.support.api import ApiTestBase, make_director

NUMERIC = {**{f"director.{k}": r for k, r in validation.DIRECTOR_SETTINGS.items() if r.kind in ("int", "seconds")},
           **{f"backend.{k}": r for k, r in validation.BACKEND_FIELDS.items() if r.kind in ("int", "seconds")}}
UNSAFE_TEXT = [
    ("health_check_host_header", "a\r\nX-Inj: 1"),
    ("health_check_host_header", "h€€€"),
    ("health_check_host_header", "two words"),
    ("health_check_host_header", ""),
    ("health_check_request_path", "/a\u0005"),
    ("health_check_request_path", "/caf\u00e9"),
    ("health_check_fcgi_script_filename", "/srv/x\n.php"),
    ("health_check_expected_status", "200\r\n"),
]
ABSURD = [("health_check_interval", 1e308), ("retry_after", 1e308), ("connect_timeout", 1e-300),
          ("queue_timeout", 86400.5), ("max_retry_count", 10**6), ("capacity", 10**7)]


@pytest.mark.parametrize("name", NUMERIC)
def test_every_number_has_both_bounds_and_they_hold(name):
    rule = NUMERIC[name]
    assert rule.minimum is not None and rule.maximum is not None, f"{name} is unbounded"
    assert rule.clean(rule.minimum) == rule.minimum and rule.clean(rule.maximum) == rule.maximum
    below = rule.minimum - (1 if rule.kind == "int" else rule.minimum / 2 or 1)
    for value in (below, rule.maximum + 1, *((1e308, 1e-300) if rule.kind == "seconds" else ())):
        if rule.minimum <= value <= rule.maximum:
            continue
        with pytest.raises(ValueError, match="from"):
            rule.clean(value)


class TestApiRefuses(ApiTestBase):
    @pytest.fixture(autouse=True)
    def dyn(self, _api_clients):
        make_director("dyn", backends={"b1": "http://127.0.0.1:3001"})

    @pytest.mark.parametrize("field, value", UNSAFE_TEXT + [f for f in ABSURD if f[0] in validation.DIRECTOR_SETTINGS])
    def test_director_settings(self, field, value):
        self.rejected("PATCH", "/api/v1/directors/dyn/", {field: value}, fields={field})

    @pytest.mark.parametrize("field, value", [f for f in ABSURD if f[0] in validation.BACKEND_FIELDS])
    def test_backend_fields(self, field, value):
        self.rejected("PATCH", "/api/v1/directors/dyn/backends/b1/", {field: value}, fields={field})

    def test_the_bounds_themselves_are_accepted(self):
        limits = {"retry_after": 86400, "connect_timeout": 0.001, "health_check_host_header": "xn--bcher-kva.example"}
        response = self.operator.patch("/api/v1/directors/dyn/", limits, format="json")
        assert response.status_code == 200, response.content
        assert {k: response.json()[k] for k in limits} == limits


@pytest.mark.django_db
def test_admin_form_names_the_field(admin_client):
    response = admin_client.post(f"{DIRECTORS}add/", director_post(
        name="new", health_check_host_header="a\r\nX-Inj: 1", health_check_interval=None, retry_after="1e308"))
    form = response.context["adminform"].form
    assert "control characters" in form.errors["health_check_host_header"][0]
    assert "from 0 to 86400" in form.errors["retry_after"][0]
    assert not Director.objects.filter(name="new").exists()


def test_config_file_names_the_key():
    text = ('[directors.app]\nhealth_check_request_path = "/a\\u0005"\nconnect_timeout = 1e-300\n'
            'backends = { a1 = { url = "http://127.0.0.1:1", health_check_interval = 1e308 } }\n')
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    errors = "\n".join(info.value.errors)
    for key in ("directors.app.health_check_request_path: ", "directors.app.connect_timeout: must be a number "
                "of seconds from 0.001 to 86400", "directors.app.backends.a1.health_check_interval: must be"):
        assert key in errors, errors


@pytest.mark.django_db
def test_x0_import_names_the_key(tmp_path):
    path = tmp_path / "bad.db"
    path.write_text("[director]\nretry-after=1e308\n")
    with pytest.raises(CommandError, match=r"\[director\] retry-after: must be a number of seconds from 0 to 86400"):
        call_command("importx0", "bad", str(path))
    assert not Director.objects.filter(name="bad").exists()
