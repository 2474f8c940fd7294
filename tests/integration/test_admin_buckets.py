"""Buckets on the director's admin page (SPEC §15): add, change, delete through the services
(audited), field errors on the fields, tree errors as messages, static directors read-only."""
import pytest

from balancer import bucket_services, services
from balancer.models import AuditRecord, Bucket
from tests.integration.test_admin import DIRECTORS, director_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool():
    return services.create_director("pool", {}, actor="test")


def with_buckets(director, rows, initial=()):
    """director_post with the bucket inline holding `initial` (saved buckets) and then `rows`."""
    data = director_post(director)
    existing = [{"id": b.pk, "director": director.pk, "name": b.name, "parent": b.parent, "rate": b.rate,
                 "ceil": b.ceil} for b in initial]
    all_rows = existing + list(rows)
    data.update({"buckets-TOTAL_FORMS": len(all_rows), "buckets-INITIAL_FORMS": len(existing)})
    for index, row in enumerate(all_rows):
        for key, value in row.items():
            data[f"buckets-{index}-{key}"] = value
    return data


def test_add_change_and_delete_buckets(admin_client, pool):
    url = f"{DIRECTORS}{pool.pk}/change/"
    response = admin_client.post(url, with_buckets(pool, [{"name": "gold", "parent": "", "rate": "0.6", "ceil": "1"},
                                                          {"name": "tin", "parent": "gold", "rate": "0.5", "ceil": "0.5"}]))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert {b.name: (b.parent, b.rate, b.ceil) for b in Bucket.objects.all()} == {
        "gold": ("", 0.6, 1.0), "tin": ("gold", 0.5, 0.5)}
    assert AuditRecord.objects.filter(action="bucket.create", actor="admin:admin").count() == 2
    gold, tin = Bucket.objects.order_by("id")
    data = with_buckets(pool, [], initial=[gold, tin])
    data["buckets-0-rate"] = "0.7"
    data["buckets-1-DELETE"] = "on"
    assert admin_client.post(url, data).status_code == 302
    assert list(Bucket.objects.values_list("name", "rate")) == [("gold", 0.7)]
    assert "gold" in admin_client.get(url).content.decode()


def test_errors_name_the_field_or_the_bucket(admin_client, pool):
    url = f"{DIRECTORS}{pool.pk}/change/"
    response = admin_client.post(url, with_buckets(pool, [{"name": "root", "parent": "", "rate": "2", "ceil": "1"}]))
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][1].formset.forms[0].errors
    assert set(errors) == {"name", "rate"}
    bucket_services.create_bucket(pool, {"name": "gold", "rate": 0.8}, actor="test")
    response = admin_client.post(url, with_buckets(pool, [{"name": "tin", "parent": "", "rate": "0.5", "ceil": "0.5"}],
                                                   initial=list(Bucket.objects.all())), follow=True)
    assert "bucket tin: rate: the rates of the buckets under root add up to 1.3" in response.content.decode().lower()
    assert not Bucket.objects.filter(name="tin").exists()


def test_static_directors_buckets_are_read_only(admin_client):
    static = services.create_director("app", {}, actor="config", dynamic=False)
    bucket_services.create_bucket(static, {"name": "gold", "rate": 0.5}, actor="config", allow_static=True)
    page = admin_client.get(f"{DIRECTORS}{static.pk}/change/").content.decode()
    assert "gold" in page and 'name="buckets-0-rate"' not in page

