"""Enable, disable and remove from the status page (balancer.status_actions) through Django's
test client: operators only (a viewer's or a forged POST gets 403 and changes nothing), the
service layer's audit records, the confirmation page naming what it deletes, and the refusal
of a protected backend with its reason."""
import pytest
from django.contrib.auth.models import User
from django.test import Client

from balancer import services
from balancer.models import AuditRecord, Backend
from balancer.permissions import grant_role

pytestmark = pytest.mark.django_db
URL1, URL2 = "http://127.0.0.1:3001", "http://127.0.0.1:3002"


@pytest.fixture
def pool():
    director = services.create_director("pool", {}, actor="test")
    services.create_backend(director, {"name": "b1", "url": URL1}, actor="test")
    services.create_backend(director, {"name": "keep", "url": URL2, "terminate_protection": True}, actor="test")
    return director


@pytest.fixture
def viewer_client():
    viewer = User.objects.create_user("viewer", "v@x", "pw", is_staff=True)
    grant_role(viewer, "viewer")
    client = Client()
    client.force_login(viewer)
    return client


def backend(name: str) -> Backend:
    return Backend.objects.get(name=name)


def action(name: str, verb: str) -> str:
    return f"/status/backends/{backend(name).pk}/{verb}"


def test_operator_disables_and_enables_with_audit(admin_client, pool):
    response = admin_client.post(action("b1", "disable"))
    assert response.status_code == 200 and response.json()["detail"] == "backend pool/b1 disabled"
    assert backend("b1").enabled is False
    assert admin_client.post(action("b1", "enable")).json()["enabled"] is True
    assert backend("b1").enabled is True
    records = AuditRecord.objects.filter(backend_name="b1").order_by("id")
    assert [(r.action, r.actor) for r in records][-2:] == [("backend.disable", "status:admin"),
                                                           ("backend.enable", "status:admin")]


def test_page_offers_actions_to_operators_only(admin_client, viewer_client, pool):
    operator_page = admin_client.get("/status/").content.decode()
    assert 'data-operator="true"' in operator_page and "csrfmiddlewaretoken" in operator_page
    viewer_page = viewer_client.get("/status/").content.decode()
    assert 'data-operator="false"' in viewer_page and "csrfmiddlewaretoken" not in viewer_page


def test_viewer_gets_403_and_nothing_changes(viewer_client, pool):
    audit_before = AuditRecord.objects.count()
    for verb in ("disable", "enable"):
        response = viewer_client.post(action("b1", verb))
        assert response.status_code == 403 and "operator rights" in response.json()["detail"]
    assert viewer_client.get(action("b1", "remove")).status_code == 403
    assert viewer_client.post(action("b1", "remove")).status_code == 403
    assert backend("b1").enabled and not backend("b1").terminating
    assert AuditRecord.objects.count() == audit_before


def test_post_without_csrf_token_or_login_changes_nothing(pool):
    operator = User.objects.create_superuser("op", "o@x", "pw")
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(operator)
    assert checked.post(action("b1", "disable")).status_code == 403
    anonymous = Client()
    response = anonymous.post(action("b1", "disable"))
    assert response.status_code == 302 and response["location"].startswith("/admin/login/")
    assert backend("b1").enabled


def test_gets_are_refused_for_enable_and_disable(admin_client, pool):
    assert admin_client.get(action("b1", "disable")).status_code == 405
    assert backend("b1").enabled


def test_remove_asks_then_drains_with_one_audit_record(admin_client, pool):
    page = admin_client.get(action("b1", "remove")).content.decode()
    assert "Remove backend <code>b1</code> of director <code>pool</code>?" in page
    assert URL1 in page and 'id="confirm-remove"' in page
    assert not backend("b1").terminating  # asking changes nothing
    response = admin_client.post(action("b1", "remove"))
    assert response.status_code == 302 and response["location"] == "/status/"
    assert backend("b1").terminating  # no data plane here: it would be removed once idle
    (record,) = AuditRecord.objects.filter(backend_name="b1", action="backend.delete")
    assert record.actor == "status:admin" and record.after["terminating"] is True
    assert "is being removed" in admin_client.get("/status/").content.decode()


def test_protected_backend_removal_is_refused_with_the_reason(admin_client, pool):
    page = admin_client.get(action("keep", "remove")).content.decode()
    assert "Cannot remove this backend: backend &#x27;keep&#x27; has terminate_protection set." in page
    assert 'id="confirm-remove"' not in page
    response = admin_client.post(action("keep", "remove"))
    assert response.status_code == 403 and b"terminate_protection" in response.content
    assert not backend("keep").terminating
    assert not AuditRecord.objects.filter(backend_name="keep", action="backend.delete").exists()


def test_unknown_backend_is_404(admin_client, pool):
    assert admin_client.post("/status/backends/999999/disable").status_code == 404
