"""TLS for traffic listeners (SPEC §12): certificates chosen by SNI, TLS 1.2/1.3, ALPN.

`load_certificates([CertificateFiles...])` reads and checks every PEM pair (ValueError
naming the entry and the file at fault) and returns a `CertificateSet`: one pyOpenSSL
context per certificate, the first the default. `ServerTLS` is what a listener's
`TLSMemoryBIOFactory` asks for a new connection; `ServerTLS.replace()` (a reload) affects
only connections accepted afterwards, since each connection keeps the context it began with.
"""
from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

ALPN_PROTOCOLS = (b"h2", b"http/1.1")  # in our order of preference
# Forward-secret AEAD suites for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults).
TLS12_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class CertificateFiles:
    """One `[proxy] tls_certificates` entry: a PEM certificate (chain allowed) and its key."""

    cert: str
    key: str


@dataclass(frozen=True)
class LoadedCertificate:
    files: CertificateFiles
    names: tuple[str, ...]  # lower-case DNS names (SAN, else the CN); "*.example.com" wildcards
    context: SSL.Context


def load_certificates(entries: tuple[CertificateFiles, ...] | list[CertificateFiles]) -> "CertificateSet":
    """A CertificateSet; ValueError `[i].cert PATH: why` / `[i].key PATH: why` on a bad entry."""
    loaded = []
    for index, files in enumerate(entries):
        try:
            loaded.append(_load(files))
        except ValueError as exc:
            raise ValueError(f"[{index}].{exc}") from None
    if not loaded:
        raise ValueError("no certificates")
    return CertificateSet(tuple(loaded))


def _load(files: CertificateFiles) -> LoadedCertificate:
    cert_pem = _read(files.cert, "cert")
    key_pem = _read(files.key, "key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ValueError(f"cert {files.cert}: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError):
        raise ValueError(f"key {files.key}: not a PEM private key (or it is encrypted)") from None
    context = _context()
    context.use_certificate(chain[0])
    for extra in chain[1:]:
        context.add_extra_chain_cert(extra)
    try:
        context.use_privatekey(key)  # type: ignore[arg-type]  # the key types OpenSSL serves with  # OpenSSL refuses a key that does not match the certificate
        context.check_privatekey()
    except SSL.Error:
        raise ValueError(f"key {files.key}: does not match the certificate in {files.cert}") from None
    return LoadedCertificate(files, certificate_names(chain[0]), context)


def _read(path: str, which: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ValueError(f"{which} {path}: cannot read ({exc.strerror or exc})") from None


def _context() -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
    context.set_cipher_list(TLS12_CIPHERS)
    context.set_alpn_select_callback(_select_alpn)
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    context.set_session_id(b"director")
    return context


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> "bytes | SSL._NoOverlappingProtocols":
    for protocol in ALPN_PROTOCOLS:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of the subjectAltName, else the common name; lower-case."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(name.lower().rstrip(".") for name in names)


def name_matches(pattern: str, server_name: str) -> bool:
    """RFC 6125 matching: exact, or `*.example.com` for exactly one left-most label."""
    if pattern == server_name:
        return True
    if pattern.startswith("*."):
        head, dot, rest = server_name.partition(".")
        return bool(head and dot) and rest == pattern[2:]
    return False


class CertificateSet:
    """Certificates in configuration order; `context_for(name)` picks by SNI."""

    def __init__(self, certificates: tuple[LoadedCertificate, ...]):
        self.certificates = certificates
        self.default = certificates[0].context
        for certificate in certificates:
            certificate.context.set_tlsext_servername_callback(self._switch)

    def context_for(self, server_name: str | None) -> SSL.Context:
        """The first certificate with an exact name match, else the first with a wildcard
        match, else the default (the first certificate)."""
        if not server_name:
            return self.default
        name = server_name.lower().rstrip(".")
        for wildcard in (False, True):
            for certificate in self.certificates:
                if any(name_matches(p, name) for p in certificate.names if p.startswith("*.") == wildcard):
                    return certificate.context
        return self.default

    def _switch(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        context = self.context_for(name.decode("ascii", "replace") if name else None)
        if context is not self.default:
            connection.set_context(context)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The connection creator of every TLS listener of one server; `replace` on reload."""

    def __init__(self, certificates: CertificateSet):
        self.certificates = certificates

    def replace(self, certificates: CertificateSet) -> None:
        self.certificates = certificates

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:  # noqa: N802 - Twisted's interface
        return SSL.Connection(self.certificates.default, None)


def tls_factory(server_tls: ServerTLS, wrapped_factory, clock=None) -> TLSMemoryBIOFactory:
    """A factory that speaks TLS and hands the plaintext to `wrapped_factory`'s protocols;
    `clock` schedules the flush of small writes gathered in one turn (default: the reactor)."""
    return TLSMemoryBIOFactory(server_tls, False, wrapped_factory, clock=clock)  # type: ignore[arg-type]  # zope interface
