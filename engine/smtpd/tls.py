"""TLS for the inbound side: server contexts from PEM files (TLS 1.2 minimum), reloaded when the files change,
self-signed certificates for ``smtpsvc cert new``, and the verification policy of outbound TLS.

Invariants: a private key is only ever written with mode 0600 (created so, never chmod-ed after the
fact) and atomically; a certificate that cannot be loaded means "no TLS", reported once per file
version, never a half-configured context.
"""

from __future__ import annotations

import datetime
import functools
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError
from engine.smtp.tls_policy import MINIMUM_VERSION
from engine.store.mailroot import write_private

if TYPE_CHECKING:
    from cryptography import x509

# cryptography (10 MB, a tenth of a second) is imported only where a certificate is made or described: an
# engine without TLS never needs it, and `smtpsvc serve` answers sooner without it.

DEFAULT_DAYS = 825  # the longest validity clients accept for a server certificate


class TlsError(EngineError):
    """A certificate or key that cannot be used; ``str`` says why, for an event or the command line."""


def server_context(certificate: str, key: str = "") -> ssl.SSLContext:
    """A server-side context for STARTTLS and implicit TLS: TLS 1.2 or newer, no compression or renegotiation."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.verify_mode = ssl.CERT_NONE  # no client certificates
    try:
        context.load_cert_chain(certificate, key or None)
    except (OSError, ssl.SSLError, ValueError) as error:
        raise TlsError(f"cannot load the certificate {certificate}{' with key ' + key if key else ''}: "
                       f"{getattr(error, 'strerror', None) or error}") from error
    return context


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


@dataclass(frozen=True)
class _Loaded:
    key: tuple[object, ...]  # the paths and the files' stamps it was loaded from
    context: ssl.SSLContext | None
    error: str


class TlsStore:
    """The current server context of one virtual server, loaded again when the paths or the files change.

    ``context()`` is called for every new connection: two ``stat`` calls when a certificate is set.
    """

    def __init__(self) -> None:
        self._loaded: _Loaded | None = None
        self.reloads = 0

    def context(self, certificate: str, key: str = "") -> ssl.SSLContext | None:
        if not certificate:
            return None
        stamp = (certificate, key, _stamp(certificate), _stamp(key) if key else None)
        loaded = self._loaded
        if loaded is None or loaded.key != stamp:
            try:
                loaded = _Loaded(stamp, server_context(certificate, key), "")
            except TlsError as error:
                loaded = _Loaded(stamp, None, str(error))
            self._loaded = loaded
            self.reloads += 1
        return loaded.context

    def fresh_error(self) -> str:
        """The load error of the last new file version, once (then ""): what an event should report."""
        loaded = self._loaded
        if loaded is None or not loaded.error:
            return ""
        self._loaded = _Loaded(loaded.key, None, "")
        return loaded.error

    def forget(self) -> None:
        """Load again at the next connection even if the files look unchanged."""
        self._loaded = None


def describe(ssl_object: object) -> str:
    """``version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256`` for the Received header ("" if unknown)."""
    version = getattr(ssl_object, "version", None)
    cipher = getattr(ssl_object, "cipher", None)
    if not callable(version) or not callable(cipher):
        return ""
    name, _protocol, bits = cipher() or ("", "", 0)
    return f"version={version()} cipher={name} bits={bits}"


# --- Self-signed certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainLink:
    """A further certificate of the same file (an intermediate or the root), as View Certificate lists it."""

    subject: str
    issuer: str
    not_after: datetime.datetime
    sha256: str


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    sha256: str  # colon-separated hex fingerprint
    self_signed: bool
    issuer: str = ""
    serial: str = ""  # colon-separated hex, as certificate viewers show it
    sha1: str = ""  # colon-separated hex (what older tools and Windows call the thumbprint)
    key: str = ""  # "RSA 2048 bits", "EC secp256r1 (256 bits)", "Ed25519"
    signature: str = ""  # e.g. sha256WithRSAEncryption
    chain: tuple[ChainLink, ...] = ()  # the file's further certificates, in file order


def create_self_signed(fqdn: str, certificate: Path, key: Path, *, days: int = DEFAULT_DAYS,
                       extra_names: tuple[str, ...] = ()) -> CertificateInfo:
    """Write a new RSA-2048 key and a self-signed certificate for ``fqdn`` (mode 0600, atomically)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)])
    names = list(dict.fromkeys((fqdn, *extra_names)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private, hashes.SHA256())
    )
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    write_private(key, key_pem)
    write_private(certificate, cert.public_bytes(serialization.Encoding.PEM))
    return _info(cert)


def certificate_info(path: Path) -> CertificateInfo:
    """The first certificate of a PEM file, described, with the further ones of the file as its chain."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as error:
        raise TlsError(f"cannot read the certificate {path}: {getattr(error, 'strerror', None) or error}") \
            from error
    return _info(certs[0], tuple(certs[1:]))


@functools.cache
def _signatures() -> dict[x509.ObjectIdentifier, str]:
    from cryptography.x509.oid import SignatureAlgorithmOID as _S

    return {_S.RSA_WITH_SHA1: "sha1WithRSAEncryption", _S.RSA_WITH_SHA256: "sha256WithRSAEncryption",
              _S.RSA_WITH_SHA384: "sha384WithRSAEncryption", _S.RSA_WITH_SHA512: "sha512WithRSAEncryption",
              _S.RSASSA_PSS: "RSASSA-PSS", _S.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
              _S.ECDSA_WITH_SHA384: "ecdsa-with-SHA384", _S.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
            _S.ED25519: "Ed25519", _S.ED448: "Ed448"}


def _hex(data: bytes) -> str:
    text = data.hex().upper()
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def key_text(key: object) -> str:
    """A public or private key's kind and size as viewers write it."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name} ({key.curve.key_size} bits)"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return f"DSA {key.key_size} bits"
    return type(key).__name__


def _info(cert: x509.Certificate, chain: tuple[x509.Certificate, ...] = ()) -> CertificateInfo:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        names=names,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
        self_signed=cert.issuer == cert.subject,
        issuer=cert.issuer.rfc4514_string(),
        serial=_hex(cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8 or 1, "big")),
        sha1=_hex(cert.fingerprint(hashes.SHA1())),
        key=key_text(cert.public_key()),
        signature=_signatures().get(cert.signature_algorithm_oid, cert.signature_algorithm_oid.dotted_string),
        chain=tuple(ChainLink(c.subject.rfc4514_string(), c.issuer.rfc4514_string(), c.not_valid_after_utc,
                              _hex(c.fingerprint(hashes.SHA256()))) for c in chain),
    )


@dataclass(frozen=True)
class PairReport:
    """What the Certificate page shows: the certificate described, and why the pair cannot be used ("" = it can)."""

    info: CertificateInfo | None
    problem: str


def inspect_pair(certificate: str, key: str = "") -> PairReport:
    """Describe the certificate file and check that it loads with its key (the match check of the GUI)."""
    if not certificate:
        return PairReport(None, "no certificate: STARTTLS is not offered")
    try:
        info = certificate_info(Path(certificate))
        server_context(certificate, key)
    except TlsError as error:
        known = locals().get("info")
        if "KEY_VALUES_MISMATCH" in str(error):
            return PairReport(known, f"the private key {key} does not belong to this certificate")
        return PairReport(known, str(error))
    now = datetime.datetime.now(datetime.UTC)
    if info.not_after < now:
        return PairReport(info, f"the certificate expired on {info.not_after:%Y-%m-%d}")
    return PairReport(info, "")


def free_pair(directory: Path, certificate: str, key: str) -> tuple[Path, Path]:
    """Names for a new certificate and key in ``directory`` that replace no file (smtpsvc-cert-2.pem …)."""
    cert_stem, key_stem = Path(certificate).stem, Path(key).stem
    for number in range(1, 1000):
        suffix = "" if number == 1 else f"-{number}"
        pair = directory / f"{cert_stem}{suffix}.pem", directory / f"{key_stem}{suffix}.pem"
        if not pair[0].exists() and not pair[1].exists():
            return pair
    raise TlsError(f"no free file name for a new certificate in {directory}")
