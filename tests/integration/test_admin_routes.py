"""The admin's routes through Django's test client: list in match order, add/change/delete
through the services (audited), their errors on the fields, config-file routes view-only."""
import pytest

from balancer import route_services, services
from balancer.models import AuditRecord, Route

pytestmark = pytest.mark.django_db
ROUTES = "/admin/balancer/route/"
BLANK = {"priority": "", "host": "", "path": "/", "director": "", "backend_from": "", "http": "", "fcgi": "",
         "document_root": "", "script_filename": ""}


@pytest.fixture
def pool():
    return services.create_director("pool", {}, actor="test")


@pytest.fixture
def file_route(pool):
    return route_services.create_route({"path": "/file/", "pass": "pool"}, actor="config:test", file_index=0)


def test_list_shows_routes_in_match_order(admin_client, file_route):
    route_services.create_route({"path": "/late/", "http": "127.0.0.1:3000", "priority": 9}, actor="test")
    route_services.create_route({"path": "/early/", "pass": "pool"}, actor="test")
    page = admin_client.get(ROUTES).content.decode()
    assert page.index("/file/") < page.index("/early/") < page.index("/late/")
    assert "config file routes[0]" in page


def test_add_change_delete_go_through_the_services(admin_client, pool, admin_user):
    response = admin_client.post(f"{ROUTES}add/", {**BLANK, "path": "/shop/", "director": "pool"})
    assert response.status_code == 302, response.content.decode()[-2000:]
    route = Route.objects.get(path="/shop/")
    assert (route.director, route.priority, route.mutable) == ("pool", 0, True)
    response = admin_client.post(f"{ROUTES}{route.pk}/change/", {**BLANK, "path": "/shop/", "http": "127.0.0.1:3000"})
    assert response.status_code == 302
    route.refresh_from_db()
    assert (route.director, route.http) == ("", "127.0.0.1:3000")
    response = admin_client.post(f"{ROUTES}{route.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Route.objects.filter(pk=route.pk).exists()
    actions = list(AuditRecord.objects.filter(action__startswith="route.").order_by("pk").values_list("actor", "action"))
    actor = f"admin:{admin_user.get_username()}"
    assert actions == [(actor, "route.create"), (actor, "route.update"), (actor, "route.delete")]


@pytest.mark.parametrize("data, field, fragment", [
    ({"director": "nowhere"}, "director", "unknown director"),
    ({"director": "pool", "path": "relative"}, "path", "must start with"),
    ({"director": "pool", "http": "127.0.0.1:1"}, None, "exactly one of pass, http, fcgi"),
])
def test_service_errors_appear_on_the_form(admin_client, pool, data, field, fragment):
    response = admin_client.post(f"{ROUTES}add/", {**BLANK, **data})
    assert response.status_code == 200 and not Route.objects.exists()
    form = response.context["adminform"].form
    errors = form.errors[field] if field else form.non_field_errors()
    assert any(fragment in message for message in errors), form.errors


def test_file_routes_are_view_only(admin_client, file_route):
    page = admin_client.get(f"{ROUTES}{file_route.pk}/change/")
    assert page.status_code == 200 and 'name="path"' not in page.content.decode()
    assert admin_client.post(f"{ROUTES}{file_route.pk}/change/", {**BLANK, "path": "/x/", "director": "pool"}).status_code == 403
    assert admin_client.post(f"{ROUTES}{file_route.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Route.objects.get(pk=file_route.pk).path == "/file/"
