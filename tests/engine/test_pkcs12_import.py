"""PKCS#12 import: real .pfx files made by cryptography and by openssl become PEM files the server loads."""

from __future__ import annotations

import datetime
import shutil
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from engine.smtpd.pkcs12_import import import_pkcs12
from engine.smtpd.tls import TlsError, certificate_info, server_context

NOW = datetime.datetime.now(datetime.UTC)


def _cert(subject: str, issuer: str, public: object, signer: object, *, ca: bool, names: tuple[str, ...] = (),
          serial: int = 0x1234ABCD) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(public)  # type: ignore[arg-type]
               .serial_number(serial)
               .not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=90))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]


def issued(leaf_key: object) -> tuple[x509.Certificate, x509.Certificate]:
    """A leaf for mx.example.test signed by a small CA: (leaf, CA)."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _cert("Example Test CA", "Example Test CA", ca_key.public_key(), ca_key, ca=True, serial=1)
    leaf = _cert("mx.example.test", "Example Test CA", leaf_key.public_key(), ca_key,  # type: ignore[attr-defined]
                 ca=False, names=("mx.example.test", "smtp.example.test"))
    return leaf, ca


def test_a_pfx_made_by_cryptography_becomes_a_loadable_pair_with_its_chain(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, ca = issued(key)
    pfx = tmp_path / "server.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(
        b"server", key, leaf, [ca], serialization.BestAvailableEncryption(b"s3cret")))
    cert_pem, key_pem = tmp_path / "conf" / "cert.pem", tmp_path / "conf" / "key.pem"
    info = import_pkcs12(pfx, "s3cret", cert_pem, key_pem)
    assert info.subject == "CN=mx.example.test" and info.issuer == "CN=Example Test CA" and not info.self_signed
    assert info.names == ("mx.example.test", "smtp.example.test")
    assert info.key == "EC secp256r1 (256 bits)" and info.signature == "sha256WithRSAEncryption"
    assert info.serial == "12:34:AB:CD"
    assert len(info.sha1.split(":")) == 20 and len(info.sha256.split(":")) == 32
    assert [link.subject for link in info.chain] == ["CN=Example Test CA"]
    for path in (cert_pem, key_pem):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert certificate_info(cert_pem) == info
    server_context(str(cert_pem), str(key_pem))  # the pair loads: the key belongs to the certificate


def test_a_pfx_made_by_openssl_imports(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is installed by tests/run")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf, ca = issued(key)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                                         serialization.NoEncryption()))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    subprocess.run(["openssl", "pkcs12", "-export", "-inkey", "key.pem", "-in", "leaf.pem", "-certfile", "ca.pem",
                    "-passout", "pass:pfx pass", "-out", "server.p12"], cwd=tmp_path, check=True,
                   capture_output=True)
    info = import_pkcs12(tmp_path / "server.p12", "pfx pass", tmp_path / "c.pem", tmp_path / "k.pem")
    assert info.key == "RSA 2048 bits" and [link.subject for link in info.chain] == ["CN=Example Test CA"]
    context = server_context(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_wrong_password_or_no_key_is_said_and_writes_nothing(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, ca = issued(key)
    pfx = tmp_path / "server.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(
        b"server", key, leaf, [ca], serialization.BestAvailableEncryption(b"right")))
    cert_pem, key_pem = tmp_path / "out" / "cert.pem", tmp_path / "out" / "key.pem"
    with pytest.raises(TlsError, match="the password is wrong"):
        import_pkcs12(pfx, "wrong", cert_pem, key_pem)
    with pytest.raises(TlsError, match="needs a password"):
        import_pkcs12(pfx, "", cert_pem, key_pem)
    only_certs = tmp_path / "certs.pfx"
    only_certs.write_bytes(pkcs12.serialize_key_and_certificates(b"c", None, None, [leaf],
                                                                 serialization.NoEncryption()))
    with pytest.raises(TlsError, match="holds no certificate"):
        import_pkcs12(only_certs, "", cert_pem, key_pem)
    (tmp_path / "not.pfx").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot this\n")
    with pytest.raises(TlsError, match="not a PKCS#12"):
        import_pkcs12(tmp_path / "not.pfx", "x", cert_pem, key_pem)
    with pytest.raises(TlsError, match="cannot read"):
        import_pkcs12(tmp_path / "missing.pfx", "x", cert_pem, key_pem)
    assert not cert_pem.exists() and not key_pem.exists()
