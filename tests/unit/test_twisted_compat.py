"""proxy.twisted_compat: a daphne or Twisted without an internal Director relies on is
refused at start, naming what is missing and the installed versions."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest

from proxy.twisted_compat import AdapterMismatch, Need, check
from tests.support.adapter_shim import without
from tests.support.processes import REPO

VERSIONS = f"Twisted {metadata.version('Twisted')} / daphne {metadata.version('daphne')}"


class Upgraded:
    """A class as a new release might ship it: one attribute gone, one hook reshaped."""

    def handle_reply(self, message, protocol):
        pass


def _fresh_upgraded():
    return Upgraded()


def mismatch(*needs: Need) -> str:
    with pytest.raises(AdapterMismatch) as info:
        check(list(needs))
    return str(info.value)


def test_a_missing_attribute_is_named_with_the_versions():
    message = mismatch(Need(Upgraded, "_tempDataBuffer"))
    assert message == (f"Director's adapter does not fit {VERSIONS}: "
                       f"{__name__}.Upgraded has no attribute _tempDataBuffer")


def test_every_mismatch_is_listed_at_once():
    message = mismatch(Need(Upgraded, "_tempDataBuffer"),
                       Need(Upgraded, "handle_reply", ("self", "protocol", "message")),
                       Need(_fresh_upgraded, "_bindPath"),
                       Need(Upgraded, "handle_reply", mentions=("application_instance",)))
    assert "has no attribute _tempDataBuffer" in message
    assert "Upgraded.handle_reply takes (self, message, protocol), not (self, protocol, message)" in message
    assert f"a fresh {__name__}.Upgraded has no attribute _bindPath" in message
    assert "Upgraded.handle_reply no longer uses application_instance" in message


def test_what_fits_passes():
    check([Need(Upgraded, "handle_reply", ("self", "message", "protocol")), Need(_fresh_upgraded, "handle_reply")])


def _import_server(env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import proxy.server"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_installed_versions_fit():
    result = _import_server()
    assert result.returncode == 0, result.stderr


def test_a_private_name_gone_from_twisted_fails_the_import(tmp_path):
    env = {**os.environ, **without(tmp_path, "twisted.web.http", "HTTPChannel", "_abortingCall")}
    result = _import_server(env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"proxy.twisted_compat.AdapterMismatch: Director's adapter does not fit {VERSIONS}: "
                    "twisted.web.http.HTTPChannel has no attribute _abortingCall")


def test_request_state_twisted_adds_is_named(monkeypatch):
    """The traffic request sets Twisted's per-request state itself (LeanRequestMixin): a
    release whose Request.__init__ sets more is refused, naming what it sets."""
    from twisted.web import http

    from proxy.twisted_compat import request_state_problems
    assert request_state_problems() == []
    plain_init = http.Request.__init__

    def init_with_more(self, *args, **kwargs):
        plain_init(self, *args, **kwargs)
        self._startedAt = 0.0

    monkeypatch.setattr(http.Request, "__init__", init_with_more)
    assert request_state_problems() == ["twisted.web.http.Request.__init__ also sets _startedAt"]
