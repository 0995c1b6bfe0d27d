"""A certificate authority of the platform's own, for the TLS listener kubectl talks to.

kubectl (client-go) sends no bearer token to an http:// server, so the Kubernetes API needs
TLS even on 127.0.0.1. Without `--tls-cert`, `tidal up` makes a CA and a server certificate
signed by it in `<data-dir>/tls/` (owner-only) once and reuses them on every start; the server
certificate is issued again (by the same CA, so kubeconfigs already handed out stay valid) only
when it no longer names every address it must, or nears its end.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DIR = "tls"
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
LOCAL_NAMES = ("127.0.0.1", "::1", "localhost")
ANY = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class LocalTLS:
    """The files of a platform's local CA and of the server certificate it signed."""

    ca_cert: Path
    cert: Path
    key: Path


def ensure_local_tls(data_dir: Path, hosts: tuple[str, ...] = ()) -> LocalTLS:
    """The CA and a server certificate for 127.0.0.1, ::1, localhost and `hosts`, made on first
    use and reused after; ValueError if the files there cannot be read."""
    directory = data_dir / DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    files = LocalTLS(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    ca_key_path = directory / "ca.key"
    names = sorted({*LOCAL_NAMES, *(h for h in hosts if h not in ANY)})
    try:
        if not (files.ca_cert.exists() and ca_key_path.exists()):
            ca_key = ec.generate_private_key(ec.SECP256R1())
            _write(ca_key_path, _key_pem(ca_key))
            _write(files.ca_cert, _pem(_ca_certificate(ca_key)))
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        if not _still_good(files, ca_cert, names):
            ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
            if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{ca_key_path} is not an EC key")
            key = ec.generate_private_key(ec.SECP256R1())
            _write(files.key, _key_pem(key))
            _write(files.cert, _pem(_server_certificate(ca_cert, ca_key, key, names)))
    except (OSError, ValueError) as exc:
        raise ValueError(f"local TLS files in {directory} are unusable: {exc}") from None
    return files


def issue_once(names: list[str], ca_name: str) -> tuple[bytes, bytes, bytes]:
    """A CA made for one use and a server certificate it signed for `names`, in PEM: (CA
    certificate, server certificate, server key). The CA's key is dropped, so nothing else can
    ever be signed by it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, ca_name)
    key = ec.generate_private_key(ec.SECP256R1())
    return _pem(ca_cert), _pem(_server_certificate(ca_cert, ca_key, key, names)), _key_pem(key)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, common_name: str = "tidal local CA"
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    names: list[str],
) -> x509.Certificate:
    now = _now()
    end = min(now + datetime.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidal")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    return alt


def _still_good(files: LocalTLS, ca_cert: x509.Certificate, names: list[str]) -> bool:
    """Whether the server certificate there is the CA's, names all of `names` and is not near
    its end."""
    if not (files.cert.exists() and files.key.exists()):
        return False
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    if cert.issuer != ca_cert.subject or cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(_alt_names(names)) <= set(present)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    """Write `path` owner-only, replacing it whole (a crash leaves the old file or the new)."""
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)
