"""The platform's own CA and the TLS listener kubectl talks to (`--kube-port`)."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509

from tests.integration.harness import Platform
from tidal.security.localca import ensure_local_tls


def _names(cert: Path) -> set[str]:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    alt = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in alt}


def test_the_ca_is_made_once_and_reissues_only_for_new_hosts(tmp_path: Path):
    first = ensure_local_tls(tmp_path, ("127.0.0.1",))
    ca, cert = first.ca_cert.read_bytes(), first.cert.read_bytes()
    assert _names(first.cert) == {"127.0.0.1", "::1", "localhost"}
    for path in (tmp_path / "tls").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    again = ensure_local_tls(tmp_path, ("0.0.0.0",))  # a wildcard is no name to certify
    assert again.ca_cert.read_bytes() == ca and again.cert.read_bytes() == cert
    wider = ensure_local_tls(tmp_path, ("10.1.2.3",))
    assert wider.ca_cert.read_bytes() == ca and wider.cert.read_bytes() != cert
    assert "10.1.2.3" in _names(wider.cert)
    context = ssl.create_default_context(cafile=str(wider.ca_cert))
    context.load_cert_chain(wider.cert, wider.key)  # the key is the certificate's


def test_unreadable_files_are_named(tmp_path: Path):
    ensure_local_tls(tmp_path)
    (tmp_path / "tls" / "ca.crt").write_text("not a certificate")
    with pytest.raises(ValueError, match=r"local TLS files in .*tls are unusable"):
        ensure_local_tls(tmp_path, ("10.9.9.9",))


def _kube(platform: Platform) -> tuple[str, bytes, str]:
    config = yaml.safe_load((platform.data_dir / "kubeconfig").read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"])
    return cluster["server"], ca, config["users"][0]["user"]["token"]


def _get(url: str, ca: bytes, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = ssl.create_default_context(cadata=ca.decode())
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), context=context, timeout=10
        ) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_kubeconfig_reaches_the_same_api_over_tls_and_survives_restarts(tmp_path: Path):
    platform = Platform(tmp_path).start()
    try:
        server, ca, token = _kube(platform)
        port = urlsplit(server).port
        assert server == f"https://127.0.0.1:{port}" and port != platform.admin_port
        assert token == platform.token
        status, body = _get(f"{server}/apis/tidal.dev/v1/info", ca, token)
        assert status == 200 and json.loads(body)["kube"] == server
        assert _get(f"{server}/apis/serving.knative.dev/v1/services", ca, None)[0] == 401
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(  # only the platform's CA vouches for it
                f"{server}/healthz", context=ssl.create_default_context(), timeout=10
            )
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with pytest.raises((OSError, http.client.HTTPException)):  # no token in clear text
            plain.request("GET", "/healthz")
            plain.getresponse()
        plain.close()
        platform.stop()
        platform.start()
        again, ca_again, _ = _kube(platform)
        assert ca_again == ca  # kubeconfigs merged earlier keep trusting it
        assert _get(f"{again}/healthz", ca, None)[0] == 200
    finally:
        platform.stop()
