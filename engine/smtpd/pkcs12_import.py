"""Import of a PKCS#12 (.pfx, .p12) file: its certificate, chain and private key become the two PEM files TLS reads."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from engine.smtpd.tls import CertificateInfo, TlsError, certificate_info
from engine.store.mailroot import write_private

PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def import_pkcs12(source: Path, password: str, certificate: Path, key: Path) -> CertificateInfo:
    """Write ``source``'s private key to ``key`` (PKCS#8, unencrypted, 0600) and its certificate followed by its
    chain to ``certificate``, each durably; nothing is written unless the file opens and the key fits."""
    try:
        data = source.read_bytes()
    except OSError as error:
        raise TlsError(f"cannot read {source}: {error.strerror or error}") from error
    try:
        private, cert, chain = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError:
        if password:
            raise TlsError(f"cannot open {source}: the password is wrong, or it is not a PKCS#12 (.pfx, .p12) "
                           "file") from None
        try:  # some tools protect with an empty password rather than none
            private, cert, chain = pkcs12.load_key_and_certificates(data, b"")
        except ValueError:
            raise TlsError(f"cannot open {source}: it needs a password, or it is not a PKCS#12 (.pfx, .p12) "
                           "file") from None
    if cert is None or private is None:
        missing = "certificate" if cert is None else "private key"
        raise TlsError(f"{source} holds no {missing}: a server needs both (export it with its private key)")
    if private.public_key().public_bytes(*PUBLIC) != cert.public_key().public_bytes(*PUBLIC):
        raise TlsError(f"the private key in {source} does not belong to its certificate")
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain))
    write_private(key, key_pem)
    write_private(certificate, cert_pem)
    return certificate_info(certificate)
