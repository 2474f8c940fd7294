"""Process environment read once at start: data directory, database URL, secret key.

Kept apart from settings.py so the parsing is testable and settings stay declarative.
"""
import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO_DIR = Path(__file__).resolve().parent.parent


class EnvironmentProblem(ValueError):
    """An environment variable that cannot work; manage.py prints it as one line and exits 1."""


def data_dir() -> Path:
    """`DIRECTOR_DATA_DIR`, default `<repo>/var/`; created if missing, for its owner only
    (it holds the secret key and the configuration snapshot)."""
    path = Path(os.environ.get("DIRECTOR_DATA_DIR") or REPO_DIR / "var")
    if not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)
        except OSError as exc:
            raise EnvironmentProblem(f"DIRECTOR_DATA_DIR: cannot create {path}: {exc.strerror}") from None
    return path


def private_sqlite_file(settings: dict) -> None:
    """Create a missing SQLite database file readable by its owner only, before SQLite would
    create it with the umask's mode (its journal and WAL files take the database's mode)."""
    name = str(settings.get("NAME", ""))
    if not settings["ENGINE"].endswith("sqlite3") or name in ("", ":memory:") or not os.path.isdir(
            os.path.dirname(name) or "."):
        return
    try:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def secret_key(directory: Path) -> str:
    """`DJANGO_SECRET_KEY`, else a key generated once into the data directory."""
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    path = directory / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


def database_from_url(url: str) -> dict:
    """Django DATABASES entry from `sqlite:///abs/path` or `postgres://user:pw@host:port/db`;
    EnvironmentProblem naming what is wrong with any other URL."""
    try:
        return _database_from_url(url)
    except ValueError as exc:  # urlsplit's own: an invalid port or IPv6 literal
        message = str(exc) if isinstance(exc, EnvironmentProblem) else f"DATABASE_URL: {exc}"
        raise EnvironmentProblem(message) from None


def _database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    str(parts.port)  # an invalid port raises here, not when Django connects
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise EnvironmentProblem(f"DATABASE_URL: {url!r}: a SQLite URL has no host; use sqlite:///ABSOLUTE/PATH")
        name = unquote(parts.path) or ":memory:"
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name,
                "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"}}
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": 0,
        }
    raise EnvironmentProblem(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use sqlite:/// or postgres://)")


def database_url() -> str:
    return os.environ.get("DATABASE_URL") or f"sqlite:///{REPO_DIR / 'db.sqlite3'}"


def redis_url() -> str | None:
    """`REDIS_URL`, or None: then everything shared stays in this process."""
    return os.environ.get("REDIS_URL") or None


def channel_prefix() -> str:
    """Prefix of every name this Director uses in a shared Redis (health leases, channel-layer
    groups): `DIRECTOR_CHANNEL_PREFIX`, else `director:<8 hex of sha256(DATABASE_URL)>`, so two
    Directors (two databases) sharing one Redis never see each other's keys, while every
    process of one Director (same database) agrees on the names without configuration."""
    explicit = os.environ.get("DIRECTOR_CHANNEL_PREFIX")
    if explicit:
        return explicit
    return "director:" + hashlib.sha256(database_url().encode()).hexdigest()[:8]


def channel_layers() -> dict:
    """In-process layer unless `REDIS_URL` is set (then Redis pub/sub, for several processes)."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                        "CONFIG": {"hosts": [redis_url], "prefix": channel_prefix() + ":"}}}


def caches() -> dict:
    """Process memory unless `REDIS_URL` is set; then Redis, so that what the cache counts
    (failed admin logins) is shared by every runproxy process and node."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": redis_url, "KEY_PREFIX": channel_prefix()}}
