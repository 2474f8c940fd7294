"""Test certificates made at test time: a CA, server certificates it signs, a self-signed one.

With the `cryptography` package when it is installed (it comes with Twisted's TLS extras),
else with the `openssl` command-line tool; neither: the tests that need them fail with a
message saying so. Keys are EC P-256 (fast to make).

    certs = make_certs(tmp_path)
    certs.ca            # PEM of the test CA (a tls_ca_file)
    certs.localhost     # (cert, key) for localhost, 127.0.0.1 and ::1, signed by the CA
    certs.backend_test  # (cert, key) for the name "backend.test" only, signed by the CA
    certs.self_signed   # (cert, key) for localhost and 127.0.0.1, signed by itself
    certs.server_context(certs.localhost)  # an ssl.SSLContext for a test backend
    make_leaf(tmp_path, "wild", ["*.example.test"])  # (cert, key), self-signed, these names
"""
from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
DAYS = 2


@dataclass(frozen=True)
class TestCerts:
    ca: str
    localhost: tuple[str, str]
    backend_test: tuple[str, str]
    self_signed: tuple[str, str]

    @staticmethod
    def server_context(pair: tuple[str, str]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*pair)
        return context


def _issuer(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            raise RuntimeError("TLS tests need the cryptography package or the openssl command to make "
                               "test certificates; neither is available") from None
        return _OpenSSL(directory)
    return _Cryptography(directory)


def make_leaf(directory: Path, stem: str, names) -> tuple[str, str]:
    """(cert, key) of a self-signed certificate for `names` (CN = the first), files `stem`.*"""
    return _issuer(Path(directory)).leaf(stem, tuple(names), None)


def make_certs(directory: Path) -> TestCerts:
    directory = Path(directory)
    issue = _issuer(directory)
    ca = issue.ca("Director test CA")
    return TestCerts(
        ca=ca[0],
        localhost=issue.leaf("localhost", LOCAL_NAMES, ca),
        backend_test=issue.leaf("backend.test", ("backend.test",), ca),
        self_signed=issue.leaf("self-signed", LOCAL_NAMES[:2], None),
    )


class _Cryptography:
    def __init__(self, directory: Path):
        self.directory = directory

    def ca(self, name: str) -> tuple[str, str]:
        from cryptography import x509

        return self._issue(name, name, (), None, x509.BasicConstraints(ca=True, path_length=0))

    def leaf(self, stem: str, names, ca) -> tuple[str, str]:
        from cryptography import x509

        return self._issue(stem, names[0], names, ca, x509.BasicConstraints(ca=False, path_length=None))

    def _issue(self, stem, common_name, names, ca, constraints) -> tuple[str, str]:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        if ca is None:
            issuer, signer = subject, key
        else:
            ca_cert = x509.load_pem_x509_certificate(Path(ca[0]).read_bytes())
            ca_key = serialization.load_pem_private_key(Path(ca[1]).read_bytes(), None)
            issuer, signer = ca_cert.subject, ca_key
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=DAYS))
                   .add_extension(constraints, critical=True)
                   # Python 3.13 verifies with X509_STRICT: key identifiers on every certificate,
                   # and key usage on a CA
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                                  critical=False))
        if constraints.ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
                critical=True)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                                            critical=False)
        cert = builder.sign(signer, hashes.SHA256())
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)


def _general_name(name: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class _OpenSSL:
    def __init__(self, directory: Path):
        self.directory = directory

    def ca(self, name: str) -> tuple[str, str]:
        cert, key = self._paths(name.replace(" ", "-"))
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", cert, "-days", str(DAYS), "-subj", f"/CN={name}",
                  "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                  "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
                  "-addext", "subjectKeyIdentifier=hash", "-addext", "authorityKeyIdentifier=keyid:always")
        return cert, key

    def leaf(self, stem: str, names, ca) -> tuple[str, str]:
        cert, key = self._paths(stem)
        san = ",".join(("IP:" if _is_ip(n) else "DNS:") + n for n in names)
        common = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                  "-days", str(DAYS), "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={san}",
                  "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "subjectKeyIdentifier=hash",
                  "-addext", "authorityKeyIdentifier=keyid:always"]
        if ca is None:
            self._run("req", "-x509", *common, "-out", cert)
        else:
            self._run("req", "-x509", *common, "-out", cert, "-CA", ca[0], "-CAkey", ca[1])
        return cert, key

    def _paths(self, stem: str) -> tuple[str, str]:
        return str(self.directory / f"{stem}.pem"), str(self.directory / f"{stem}.key")

    @staticmethod
    def _run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False
