"""Bad TLS listener settings are config errors naming the key (SPEC §12), in `checkconfig`
and at `runproxy` start: a missing certificate file, a key that does not match its
certificate, a `tls://` listener without certificates, tls:// on the management listener."""
import subprocess
import sys

import pytest

from tests.integration.test_checkconfig import checkconfig
from tests.support.certs import make_certs
from tests.support.config_files import toml_value
from tests.support.director import Director
from tests.support.processes import REPO
from tests.support.waiting import free_port


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def proxy_table(**values) -> str:
    return "[proxy]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())


def errors_of(tmp_path, text: str) -> list[str]:
    path = tmp_path / "director.toml"
    path.write_text(text)
    result = checkconfig(path)
    assert result.returncode == 1, result.stdout
    return result.stderr.splitlines()[1:]


def test_missing_certificate_file_names_the_entry(tmp_path, certs):
    missing = str(tmp_path / "nope.pem")
    lines = errors_of(tmp_path, proxy_table(tls_certificates=[
        {"cert": certs.localhost[0], "key": certs.localhost[1]}, {"cert": missing, "key": certs.localhost[1]}]))
    assert len(lines) == 1
    assert lines[0].startswith("proxy.tls_certificates: [1].cert ")
    assert missing in lines[0] and "cannot read" in lines[0]


def test_unreadable_key_and_key_of_another_certificate(tmp_path, certs):
    lines = errors_of(tmp_path, proxy_table(tls_certificates=[{"cert": certs.localhost[0], "key": certs.backend_test[1]}]))
    assert lines == [f"proxy.tls_certificates: [0].key {certs.backend_test[1]}: does not match the certificate in "
                     f"{certs.localhost[0]}"]
    not_a_key = tmp_path / "garbage.key"
    not_a_key.write_text("hello")
    lines = errors_of(tmp_path, proxy_table(tls_certificates=[{"cert": certs.localhost[0], "key": str(not_a_key)}]))
    assert lines[0].startswith(f"proxy.tls_certificates: [0].key {not_a_key}: not a PEM private key")


def test_malformed_entries(tmp_path):
    lines = errors_of(tmp_path, proxy_table(tls_certificates=[{"cert": "/x.pem"}]))
    assert lines == ['proxy.tls_certificates: [0]: must be a table with exactly cert = "PATH" and key = "PATH"']
    lines = errors_of(tmp_path, proxy_table(tls_certificates="/x.pem"))
    assert lines[0].startswith("proxy.tls_certificates: must be a list of tables")


def test_tls_listener_without_certificates(tmp_path):
    lines = errors_of(tmp_path, proxy_table(listen=["127.0.0.1:8080", "tls://[::1]:8443"]))
    assert lines == ["proxy.listen: tls://[::1]:8443 needs [proxy] tls_certificates (none are configured)"]


def test_tls_management_listener_and_shared_port_refused(tmp_path, certs):
    pair = {"cert": certs.localhost[0], "key": certs.localhost[1]}
    lines = errors_of(tmp_path, proxy_table(admin_listen="tls://127.0.0.1:8081", tls_certificates=[pair]))
    assert lines == ["proxy.admin_listen: the management listener speaks plain HTTP: tls:// is for traffic listeners"]
    lines = errors_of(tmp_path, proxy_table(listen=["127.0.0.1:8080", "tls://127.0.0.1:8080"], tls_certificates=[pair]))
    assert lines[0].startswith("proxy.listen: tls://127.0.0.1:8080 is listed twice")


def test_runproxy_refuses_a_tls_flag_without_certificates(tmp_path):
    director = Director(tmp_path, "")
    result = subprocess.run([sys.executable, "manage.py", "runproxy", "--config", director.config_path,
                             "--listen", f"tls://127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{free_port()}"],
                            cwd=REPO, env=director.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "proxy.listen: tls://127.0.0.1:" in result.stderr + result.stdout
