"""Who may use the API: tokens, staff sessions with CSRF, viewers and operators (SPEC §9)."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from balancer.permissions import grant_role
from tests.support.api import ApiTestBase, make_director, token_client

READS = ["/api/v1/directors/", "/api/v1/directors/pool/", "/api/v1/directors/pool/backends/",
         "/api/v1/directors/pool/backends/b1/", "/api/v1/audit/", "/api/v1/schema/", "/api/v1/docs/"]
WRITES = [
    ("POST", "/api/v1/directors/", {"name": "other"}),
    ("PATCH", "/api/v1/directors/pool/", {"queue_limit": 1}),
    ("DELETE", "/api/v1/directors/pool/", None),
    ("POST", "/api/v1/directors/pool/backends/", {"name": "b2", "url": "http://127.0.0.1:1"}),
    ("PATCH", "/api/v1/directors/pool/backends/b1/", {"capacity": 1}),
    ("DELETE", "/api/v1/directors/pool/backends/b1/", None),
    ("POST", "/api/v1/directors/pool/backends/b1/enable", None),
    ("POST", "/api/v1/directors/pool/backends/b1/disable", None),
]


@pytest.fixture(autouse=True)
def pool(db):
    return make_director("pool", backends={"b1": "http://127.0.0.1:3001"})


def session_client(*, staff: bool, role: str | None = None, superuser: bool = False, perms=()) -> Client:
    """A browser-like client logged in to the admin, enforcing CSRF, holding a CSRF cookie."""
    user = get_user_model().objects.create_user("browser", password="pw", is_staff=staff, is_superuser=superuser)
    if role:
        grant_role(user, role)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="balancer", codename=perm))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/admin/", follow=True)  # an admin page sets the csrftoken cookie, as in a browser
    client.user = user
    return client


def csrf_headers(client: Client) -> dict:
    """What a browser script sends with a write: JSON content type and the CSRF token."""
    return {"content_type": "application/json", "HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


class TestTokens(ApiTestBase):
    @pytest.mark.parametrize("url", READS)
    def test_no_credentials_is_401_with_a_challenge(self, url):
        response = self.call("GET", url, expect=401, client=self.anonymous)
        assert response["WWW-Authenticate"] == "Token"

    @pytest.mark.parametrize("method, url, data", WRITES)
    def test_writes_without_credentials_are_401(self, method, url, data):
        self.call(method, url, data, expect=401, client=self.anonymous)

    def test_unknown_token_is_401(self):
        self.anonymous.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
        self.call("GET", READS[0], expect=401, client=self.anonymous)

    @pytest.mark.parametrize("url", READS)
    def test_viewers_read(self, url):
        self.call("GET", url, expect=200, client=self.viewer)

    @pytest.mark.parametrize("method, url, data", WRITES)
    def test_viewers_cannot_write(self, method, url, data):
        assert "detail" in self.call(method, url, data, expect=403, client=self.viewer).json()

    def test_a_user_without_a_role_gets_403(self):
        self.call("GET", READS[0], expect=403, client=token_client("nobody"))

    def test_an_inactive_operator_is_refused(self):
        self.operator.user.is_active = False
        self.operator.user.save()
        self.call("GET", READS[0], expect=401, client=self.operator)


class TestSessions(ApiTestBase):
    def test_staff_operator_session_reads_and_writes_with_csrf(self):
        client = session_client(staff=True, role="operator")
        self.call("GET", READS[0], expect=200, client=client)
        url = "/api/v1/directors/pool/backends/b1/disable"
        self.call("POST", url, expect=403, client=client)  # no CSRF token
        response = client.post(url, **csrf_headers(client))
        assert response.status_code == 200 and response.json()["enabled"] is False

    def test_superuser_session_is_an_operator(self):
        client = session_client(staff=True, superuser=True)
        response = client.patch("/api/v1/directors/pool/", {"queue_limit": 9}, **csrf_headers(client))
        assert response.status_code == 200 and response.json()["queue_limit"] == 9

    def test_non_staff_session_is_403_even_with_a_role(self):
        client = session_client(staff=False, role="operator")
        self.call("GET", READS[0], expect=403, client=client)

    def test_staff_without_a_role_is_403(self):
        self.call("GET", READS[0], expect=403, client=session_client(staff=True))

    def test_admin_permissions_grant_the_matching_api_rights(self):
        viewer = session_client(staff=True, perms=["view_director"])
        self.call("GET", READS[0], expect=200, client=viewer)
        self.call("PATCH", "/api/v1/directors/pool/", {"queue_limit": 2}, expect=403, client=viewer)
        get_user_model().objects.filter(username="browser").delete()
        editor = session_client(staff=True, perms=["change_director", "change_backend"])
        response = editor.patch("/api/v1/directors/pool/", {"queue_limit": 2}, **csrf_headers(editor))
        assert response.status_code == 200

    def test_staff_viewer_session_reads_only(self):
        client = session_client(staff=True, role="viewer")
        self.call("GET", READS[0], expect=200, client=client)
        response = client.post("/api/v1/directors/pool/backends/b1/disable", **csrf_headers(client))
        assert response.status_code == 403


@pytest.mark.parametrize("path", ["/api/", "/api/v1/nope/", "/api/v2/directors/", "/api/v1/directors/pool/backends/b1/x"])
def test_unknown_api_paths_get_a_json_404(path):
    response = token_client("operator").get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("No API endpoint")
