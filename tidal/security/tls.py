"""TLS contexts for tidal's listeners and for clients of its admin API."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the given certificate chain; ValueError naming the file that is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert} with key {key}: {exc}") from None
    return context


def client_context(ca_cert: str | None) -> ssl.SSLContext:
    """Verify the server against the system's CAs, or against `ca_cert`: a CA, or the server's
    own certificate (a self-signed one, or one a private CA issued: the platform's processes
    pin the certificate `tidal up --tls-cert` was given, so any certificate in the file is
    trusted as it is, without its issuers)."""
    context = ssl.create_default_context(cafile=ca_cert)
    if ca_cert is not None:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context
