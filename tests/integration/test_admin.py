"""The admin through Django's test client: lists, static read-only forms, service errors, actions."""
import pytest
from django.utils.html import escape

from balancer import health_store, services
from balancer.admin import STATIC_NOTE
from balancer.models import AuditRecord, Backend, Director
from balancer.validation import DIRECTOR_SETTINGS

pytestmark = pytest.mark.django_db
URL1, URL2 = "http://127.0.0.1:3001", "http://127.0.0.1:3002"
DIRECTORS = "/admin/balancer/director/"
BACKENDS = "/admin/balancer/backend/"
BACKEND_ROW_FIELDS = ["name", "url", "role", "capacity", "health_check_mode", "health_check_interval", "tls_ca_file",
                      "tls_server_name"]
BOOLEANS = ("enabled", "terminate_protection", "tls_verify")
NEW_ROW = {"tls_verify": True}  # a checkbox checked by default: a browser sends it


def _form_value(value):
    return "on" if value is True else ("" if value is False else value)


def director_post(director=None, backends=(), new_backends=(), **overrides) -> dict:
    """POST data for the director change/add form with its backend inline."""
    data = {} if director is None else {"name": director.name}
    for name, rule in DIRECTOR_SETTINGS.items():
        value = getattr(director, name) if director is not None else rule.default
        if value is not False:
            data[name] = _form_value(value)
    rows = [{"id": b.pk, "director": b.director_id, **{f: getattr(b, f) for f in BACKEND_ROW_FIELDS + list(BOOLEANS)}}
            for b in backends] + [{**NEW_ROW, **row} for row in new_backends]
    data.update({"backends-TOTAL_FORMS": len(rows), "backends-INITIAL_FORMS": len(backends),
                 "backends-MIN_NUM_FORMS": 0, "backends-MAX_NUM_FORMS": 1000,
                 "buckets-TOTAL_FORMS": 0, "buckets-INITIAL_FORMS": 0})  # the bucket inline: no rows
    for index, row in enumerate(rows):
        for key, value in row.items():
            if value is not False:
                data[f"backends-{index}-{key}"] = _form_value(value)
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@pytest.fixture
def dynamic():
    director = services.create_director("pool", {}, actor="test")
    for name, url in (("b1", URL1), ("b2", URL2)):
        services.create_backend(director, {"name": name, "url": url}, actor="test")
    return director


@pytest.fixture
def static():
    director = services.create_director("app", {}, actor="config", dynamic=False)
    services.create_backend(director, {"name": "app1", "url": URL1}, actor="config", allow_static=True)
    return director


def test_lists_show_health_and_counts(admin_client, dynamic, static):
    health_store.record_health(dynamic.backends.get(name="b1").pk, "online")
    health_store.record_health(dynamic.backends.get(name="b2").pk, "offline", error="connection refused")
    page = admin_client.get(DIRECTORS).content.decode()
    assert "1 / 2" in page and "0 / 1" in page
    page = admin_client.get(BACKENDS).content.decode()
    cells = [f'class="director-state state-{state}"' for state in ("online", "offline", "undefined")]
    assert [page.count(cell) for cell in cells] == [1, 1, 1]
    assert "#f6c4c0" in page  # offline in the status page's colour
    change = admin_client.get(f"{DIRECTORS}{dynamic.pk}/change/").content.decode()
    assert "connection refused" in change


def test_static_director_is_read_only_except_enabled(admin_client, static):
    page = admin_client.get(f"{DIRECTORS}{static.pk}/change/").content.decode()
    assert escape(STATIC_NOTE) in page
    assert 'name="backends-0-enabled"' in page
    for absent in ('name="queue_limit"', 'name="backends-0-capacity"', 'name="backends-1-name"', "delete/"):
        assert absent not in page, absent
    backend = static.backends.get()
    data = director_post(static, queue_limit="5", **{
        "backends-0-id": backend.pk, "backends-0-director": static.pk, "backends-0-capacity": "9",
        "backends-TOTAL_FORMS": 1, "backends-INITIAL_FORMS": 1})
    response = admin_client.post(f"{DIRECTORS}{static.pk}/change/", data)  # enabled unchecked
    assert response.status_code == 302, response.content.decode()[:2000]
    backend.refresh_from_db()
    static.refresh_from_db()
    assert (backend.enabled, backend.capacity, static.queue_limit) == (False, 0, 128)
    record = AuditRecord.objects.get(action="backend.disable")
    assert (record.actor, record.director_name, record.backend_name) == ("admin:admin", "app", "app1")
    assert admin_client.post(f"{DIRECTORS}{static.pk}/delete/", {"post": "yes"}).status_code == 403


def test_service_validation_errors_appear_on_fields(admin_client, dynamic):
    data = director_post(name="new", health_check_expected_status="abc", queue_timeout="-1",
                         new_backends=[{"name": "x", "url": "ftp://x", "role": "active", "capacity": "0",
                                        "health_check_mode": "paranoid", "health_check_interval": "2", "enabled": True}])
    response = admin_client.post(f"{DIRECTORS}add/", data)
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "'abc' is not a status code" in form.errors["health_check_expected_status"][0]
    assert form.errors["queue_timeout"] == ["must be a number of seconds from 0 to 86400"]
    inline = response.context["inline_admin_formsets"][0]  # backends, then buckets
    assert "backend URL 'ftp://x'" in inline.formset.forms[0].errors["url"][0]
    assert not Director.objects.filter(name="new").exists()

    response = admin_client.post(f"{DIRECTORS}add/", director_post(name="pool"))
    assert "director 'pool' already exists" in response.context["adminform"].form.errors["name"][0]
    backends = list(dynamic.backends.all())
    response = admin_client.post(f"{DIRECTORS}{dynamic.pk}/change/", director_post(
        dynamic, backends, new_backends=[{"name": "b1", "url": URL2, "role": "active", "capacity": "0",
                                          "health_check_mode": "paranoid", "health_check_interval": "2"}]))
    inline = response.context["inline_admin_formsets"][0]  # backends, then buckets
    assert any("already exists" in e for e in inline.formset.non_form_errors() + inline.formset.forms[2].errors.get("name", []))


def test_add_and_change_go_through_services(admin_client, dynamic):
    data = director_post(name="web", scheduler="least_load", new_backends=[
        {"name": "w1", "url": "http://[::1]:4000", "role": "backup", "capacity": "3",
         "health_check_mode": "lazy", "health_check_interval": "0.5", "enabled": True}])
    version = services.current_version()
    response = admin_client.post(f"{DIRECTORS}add/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    web = Director.objects.get(name="web")
    w1 = web.backends.get()
    assert (web.scheduler, w1.role, w1.capacity, w1.host, w1.health_check_interval) == ("least_load", "backup", 3, "::1", 0.5)
    assert services.current_version() == version + 2
    assert list(AuditRecord.objects.filter(actor="admin:admin").values_list("action", flat=True).order_by("id")) == [
        "director.create", "backend.create"]

    backends = list(dynamic.backends.all())
    data = director_post(dynamic, backends, queue_limit="7", **{"backends-0-capacity": "5", "backends-1-DELETE": "on"})
    response = admin_client.post(f"{DIRECTORS}{dynamic.pk}/change/", data)
    assert response.status_code == 302
    assert Director.objects.get(pk=dynamic.pk).queue_limit == 7
    assert Backend.objects.get(name="b1").capacity == 5
    assert Backend.objects.get(name="b2").terminating  # delete = drain
    actions = list(AuditRecord.objects.filter(director_name="pool", actor="admin:admin").values_list("action", flat=True))
    assert sorted(actions) == ["backend.delete", "backend.update", "director.update"]


def test_https_backend_tls_fields_and_their_errors(admin_client, dynamic, tmp_path):
    from tests.support.certs import make_certs

    ca = make_certs(tmp_path).ca
    row = {"role": "active", "capacity": "0", "health_check_mode": "paranoid", "health_check_interval": "2",
           "enabled": True}
    backends = list(dynamic.backends.all())
    response = admin_client.post(f"{DIRECTORS}{dynamic.pk}/change/", director_post(dynamic, backends, new_backends=[
        {**row, "name": "s1", "url": "https://127.0.0.1:8443", "tls_ca_file": ca, "tls_server_name": "backend.test"},
        {**row, "name": "s2", "url": "https://127.0.0.1:8444", "tls_verify": False}]))
    assert response.status_code == 302
    s1, s2 = Backend.objects.get(name="s1"), Backend.objects.get(name="s2")
    assert (s1.protocol, s1.tls_verify, s1.tls_ca_file, s1.tls_server_name) == ("http", True, ca, "backend.test")
    assert (s2.tls_verify, s2.tls_ca_file) == (False, "")

    backends = list(dynamic.backends.all())
    response = admin_client.post(f"{DIRECTORS}{dynamic.pk}/change/", director_post(dynamic, backends, new_backends=[
        {**row, "name": "s3", "url": "https://127.0.0.1:8445", "tls_ca_file": "/nonexistent.pem"},
        {**row, "name": "p3", "url": "http://127.0.0.1:8446", "tls_verify": False}]))
    inline = response.context["inline_admin_formsets"][0]  # backends, then buckets
    forms = {f.cleaned_data.get("name"): f for f in inline.formset.forms}
    assert "no such file" in forms["s3"].errors["tls_ca_file"][0]
    assert "only for https:// backends" in forms["p3"].errors["tls_verify"][0]
    assert not Backend.objects.filter(name__in=["s3", "p3"]).exists()


def test_protected_backend_cannot_be_deleted_inline(admin_client, dynamic):
    services.update_backend(dynamic.backends.get(name="b2"), {"terminate_protection": True}, actor="test")
    backends = list(dynamic.backends.all())
    response = admin_client.post(f"{DIRECTORS}{dynamic.pk}/change/", director_post(dynamic, backends, **{"backends-1-DELETE": "on"}))
    assert response.status_code == 200 and "terminate_protection" in response.content.decode()
    assert not Backend.objects.get(name="b2").terminating


def test_backend_actions_are_audited(admin_client, dynamic, static):
    ids = list(Backend.objects.values_list("pk", flat=True))
    response = admin_client.post(BACKENDS, {"action": "disable_backends", "_selected_action": ids})
    assert response.status_code == 302 and not Backend.objects.filter(enabled=True).exists()
    assert AuditRecord.objects.filter(action="backend.disable", actor="admin:admin").count() == 3
    admin_client.post(BACKENDS, {"action": "enable_backends", "_selected_action": ids})
    assert not Backend.objects.filter(enabled=False).exists()
    confirm = admin_client.post(BACKENDS, {"action": "drain_backends", "_selected_action": ids})
    assert confirm.status_code == 200 and not Backend.objects.filter(terminating=True).exists()  # asks first
    page = confirm.content.decode()
    assert "no: director &#x27;app&#x27; is defined in the config file" in page  # the static backend refuses
    assert 'data-backend="pool/b1"' in page and URL1 in page and 'id="confirm-drain"' in page
    drainable = [b.pk for b in Backend.objects.filter(director=dynamic)]
    response = admin_client.post(BACKENDS, {"action": "drain_backends", "_selected_action": drainable, "post": "yes"},
                                 follow=True)
    assert "Draining 2 backend(s)" in response.content.decode()
    assert set(Backend.objects.filter(terminating=True).values_list("name", flat=True)) == {"b1", "b2"}
    assert AuditRecord.objects.filter(action="backend.delete", actor="admin:admin").count() == 2
    again = admin_client.post(BACKENDS, {"action": "drain_backends", "_selected_action": drainable}).content.decode()
    assert "no: already draining" in again and 'id="confirm-drain"' not in again


def test_audit_log_is_read_only(admin_client, dynamic):
    record = AuditRecord.objects.first()
    assert admin_client.get("/admin/balancer/auditrecord/").status_code == 200
    assert admin_client.get("/admin/balancer/auditrecord/add/").status_code == 403
    page = admin_client.get(f"/admin/balancer/auditrecord/{record.pk}/change/").content.decode()
    assert "&quot;name&quot;" in page and 'name="_save"' not in page
    assert admin_client.post(f"/admin/balancer/auditrecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403


class _Stats:
    def backend_stats(self, backend_id):
        return {"load": {"current": 3, "max": 5, "total": 99}, "failures": 4}

    def director_stats(self, director_id):
        return None


def test_load_column_reads_live_stats(admin_client, dynamic):
    from balancer import livestats

    page = admin_client.get(BACKENDS).content.decode()
    assert '<td class="field-load">–</td>' in page  # no data plane in this process
    livestats.register(_Stats())
    try:
        page = admin_client.get(BACKENDS).content.decode()
    finally:
        livestats.register(None)
    assert page.count('<td class="field-load">3 / ∞</td>') == 2
    assert page.count('<td class="field-requests">99</td>') == 2 and page.count('<td class="field-errors">4</td>') == 2


def test_backend_list_times_to_the_second(admin_client, dynamic):
    from datetime import datetime, timezone

    checked = datetime(2026, 12, 6, 20, 1, 2, tzinfo=timezone.utc)
    health_store.store_health(dynamic.backends.get(name="b1").pk, "online", checked_at=checked)
    page = admin_client.get(BACKENDS).content.decode()
    assert '<td class="field-last_checked_at">2026-12-06 20:01:02</td>' in page


def test_admin_says_director(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "| Director</title>" in page
    assert '<a href="/admin/">Director</a>' in page and "Django administration" not in page


def test_history_shows_the_objects_audit_records(admin_client, dynamic):
    b1 = dynamic.backends.get(name="b1")
    services.set_backend_enabled(b1, False, actor="api:ops")
    page = admin_client.get(f"{BACKENDS}{b1.pk}/history/").content.decode()
    assert "doesn’t have a change history" not in page and "have a change history" not in page
    assert page.count('class="audit-record"') == 2  # created, disabled; not b2's records
    assert "api:ops" in page and "backend.disable" in page and "enabled: True → False" in page
    director_page = admin_client.get(f"{DIRECTORS}{dynamic.pk}/history/").content.decode()
    assert director_page.count('class="audit-record"') == 4  # the director, two backends, the disable


def test_route_history(admin_client):
    from balancer import route_services

    route = route_services.create_route({"path": "/api/", "http": "127.0.0.1:3001"}, actor="api:ops")
    route_services.update_route(route, {"path": "/v2/"}, actor="admin:admin")
    page = admin_client.get(f"/admin/balancer/route/{route.pk}/history/").content.decode()
    assert page.count('class="audit-record"') == 2 and "path: &#x27;/api/&#x27; → &#x27;/v2/&#x27;" in page


def test_audit_times_to_the_second(admin_client, dynamic):
    record = AuditRecord.objects.first()
    page = admin_client.get("/admin/balancer/auditrecord/").content.decode()
    assert record.at.strftime("%Y-%m-%d %H:%M:%S") in page
