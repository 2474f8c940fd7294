"""director_site.environment: the prefix of names in a shared Redis."""
from director_site import environment


def test_prefix_follows_the_database_so_two_directors_can_share_one_redis(monkeypatch):
    monkeypatch.delenv("DIRECTOR_CHANNEL_PREFIX", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://db1/director")
    first = environment.channel_prefix()
    assert first.startswith("director:") and first == environment.channel_prefix()
    monkeypatch.setenv("DATABASE_URL", "postgres://db2/director")
    assert environment.channel_prefix() != first


def test_prefix_can_be_set(monkeypatch):
    monkeypatch.setenv("DIRECTOR_CHANNEL_PREFIX", "acme")
    assert environment.channel_prefix() == "acme"
