"""`manage.py createapitoken USER [--viewer] [--existing]` (SPEC §2): only the key on stdout, same key
again; an unknown user is created with a line on stderr saying so, or refused with --existing."""
from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from balancer.permissions import is_operator, is_viewer
from tests.support.api import make_director
from tests.support.processes import REPO


def manage(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_command_prints_only_the_key_and_the_same_key_again_and_fails_cleanly(tmp_path):
    database = tmp_path / "db.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "DIRECTOR_DATA_DIR": str(tmp_path)}
    assert manage("migrate", "-v0", env=env).returncode == 0
    typo = manage("createapitoken", "--existing", "ic", env=env)
    assert typo.returncode == 1 and typo.stdout == "" and "no user 'ic'" in typo.stderr
    first = manage("createapitoken", "ci", env=env)
    again = manage("createapitoken", "ci", env=env)
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    key = first.stdout.removesuffix("\n")
    assert len(key) == 40 and key.isalnum() and first.stdout == key + "\n"
    assert again.stdout == first.stdout
    assert "there was no user 'ci': created it, with operator rights" in first.stderr
    assert "created" not in again.stderr
    with sqlite3.connect(database) as db:
        stored = db.execute("SELECT t.key FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id "
                            "WHERE u.username = 'ci'").fetchall()
    assert stored == [(key,)]
    bad = manage("createapitoken", "no spaces allowed", env=env)
    assert bad.returncode != 0 and bad.stdout == "" and "invalid user name" in bad.stderr


def create(*args) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("createapitoken", *args, stdout=out, stderr=err)
    return out.getvalue().strip()


@pytest.mark.django_db
class TestRoles:
    def test_operator_token_reads_and_writes(self):
        key = create("alice")
        user = get_user_model().objects.get(username="alice")
        assert is_operator(user) and not user.has_usable_password() and Token.objects.get(user=user).key == key
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.post("/api/v1/directors/", {"name": "pool"}, format="json").status_code == 201

    def test_viewer_token_reads_only(self):
        make_director("pool")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {create('bob', '--viewer')}")
        assert client.get("/api/v1/directors/pool/").status_code == 200
        assert client.delete("/api/v1/directors/pool/").status_code == 403

    def test_rerun_keeps_the_key_and_sets_the_role_given(self):
        key = create("carol", "--viewer")
        user = get_user_model().objects.get(username="carol")
        assert is_viewer(user) and not is_operator(user)
        assert create("carol") == key
        user = get_user_model().objects.get(username="carol")
        assert is_operator(user)

    def test_existing_user_keeps_its_password(self):
        get_user_model().objects.create_user("dave", password="secret")
        call_command("createapitoken", "dave", stdout=io.StringIO(), stderr=io.StringIO())
        assert get_user_model().objects.get(username="dave").check_password("secret")
        assert is_operator(get_user_model().objects.get(username="dave"))

    def test_an_unknown_user_is_refused_with_existing(self):
        with pytest.raises(CommandError, match="no user 'erin': check the name"):
            call_command("createapitoken", "--existing", "erin", stdout=io.StringIO(), stderr=io.StringIO())
        assert not get_user_model().objects.filter(username="erin").exists()

    def test_invalid_name_raises(self):
        with pytest.raises(CommandError):
            create("a b")
