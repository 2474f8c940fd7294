"""The SQLite database and the data directory (secret key, configuration snapshot, pid file)
are created readable by their owner only (SPEC §13), whatever the umask."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from tests.support.processes import REPO


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_fresh_install_creates_its_database_and_data_directory_for_the_owner_only(tmp_path):
    data, database = tmp_path / "new" / "var", tmp_path / "db.sqlite3"
    env = {**os.environ, "DIRECTOR_DATA_DIR": str(data), "DATABASE_URL": f"sqlite:///{database}"}
    env.pop("DJANGO_SECRET_KEY", None)
    migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
    assert migrated.returncode == 0, migrated.stderr
    assert mode(data) == 0o700
    assert mode(data / "secret_key") == 0o600
    assert mode(database) == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("db.sqlite3") and mode(p) & 0o077]
