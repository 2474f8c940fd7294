"""proxy.tls without a server: certificate names, SNI matching, the choice of context."""
import pytest

from proxy.tls import CertificateFiles, load_certificates, name_matches
from tests.support.certs import make_certs, make_leaf


@pytest.mark.parametrize("pattern, name, matches", [
    ("example.test", "example.test", True),
    ("*.example.test", "a.example.test", True),
    ("*.example.test", "example.test", False),
    ("*.example.test", "a.b.example.test", False),
    ("*.example.test", ".example.test", False),
    ("a.example.test", "b.example.test", False),
])
def test_name_matching(pattern, name, matches):
    assert name_matches(pattern, name) is matches


def test_exact_name_beats_an_earlier_wildcard_and_the_first_is_the_default(tmp_path):
    wild = make_leaf(tmp_path, "wild", ["*.example.test"])
    exact = make_leaf(tmp_path, "exact", ["www.example.test"])
    cn_only = make_certs(tmp_path / "ca").localhost
    certificates = load_certificates([CertificateFiles(*wild), CertificateFiles(*exact), CertificateFiles(*cn_only)])
    contexts = [c.context for c in certificates.certificates]
    assert [c.names for c in certificates.certificates] == [("*.example.test",), ("www.example.test",),
                                                            ("localhost",)]
    assert certificates.context_for("WWW.example.test.") is contexts[1]
    assert certificates.context_for("api.example.test") is contexts[0]
    assert certificates.context_for("localhost") is contexts[2]
    assert certificates.context_for(None) is contexts[0]
    assert certificates.context_for("elsewhere.test") is contexts[0]


def test_a_chain_file_is_accepted(tmp_path):
    certs = make_certs(tmp_path)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(open(certs.localhost[0], "rb").read() + open(certs.ca, "rb").read())
    loaded = load_certificates([CertificateFiles(str(chain), certs.localhost[1])])
    assert loaded.certificates[0].names == ("localhost",)


def test_errors_name_the_entry_and_file(tmp_path):
    certs = make_certs(tmp_path)
    good = CertificateFiles(*certs.localhost)
    with pytest.raises(ValueError, match=r"^\[1\]\.cert /nonexistent.pem: cannot read"):
        load_certificates([good, CertificateFiles("/nonexistent.pem", certs.localhost[1])])
    with pytest.raises(ValueError, match=r"^\[0\]\.cert .*: not a PEM certificate"):
        load_certificates([CertificateFiles(certs.localhost[1], certs.localhost[1])])
