"""A real `tidal up`, tried as the issue's attacker would, and used as a user would."""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import Platform, free_port, hello_service, host, wait_until
from tidal.security.localca import ensure_local_tls

APPLY = "/apis/tidal.dev/v1/apply"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    # the gateway on every interface, as in the issue; the admin API must stay on loopback
    p = Platform(tmp_path_factory.mktemp("auth"), args=("--host", "0.0.0.0")).start()
    yield p
    p.stop()


def tidal(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidal", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def stranger_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user with no record of the platform (another config home)."""
    env = {k: v for k, v in os.environ.items() if k != "TIDAL_TOKEN"}
    return {**env, "XDG_CONFIG_HOME": str(tmp_path / "elsewhere"), **extra}


def test_the_issues_remote_command_execution_is_refused(platform: Platform, tmp_path: Path):
    marker = tmp_path / "pwned"
    doc = hello_service("evil")
    doc["spec"]["template"]["spec"]["containers"][0]["command"] = ["touch", str(marker)]
    attempts = [
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, False, 403),
        ({"Content-Type": "application/json"}, False, 401),
        ({"Content-Type": "text/plain"}, True, 415),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, True, 403),
    ]
    for headers, token, expected in attempts:
        status, body = platform.api("POST", APPLY, {"items": [doc]}, headers, token=token)
        assert status == expected, body
    assert platform.get_json("services")["items"] == []
    time.sleep(0.5)
    assert not marker.exists()


def test_admin_listens_on_loopback_only_while_the_gateway_is_exposed(platform: Platform):
    listening = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if state == "0A":  # LISTEN
            listening[int(port, 16)] = str(ipaddress.IPv4Address(bytes.fromhex(address)[::-1]))
    assert listening[platform.admin_port] == "127.0.0.1"
    assert listening[platform.port] == "0.0.0.0"


def test_the_cli_finds_the_token_of_a_local_platform(platform: Platform):
    # platform.cli runs `tidal --server URL get ...` with no token: it finds the recorded one
    assert platform.cli("get", "services").returncode == 0


def test_a_cli_without_the_token_is_told_what_to_do(platform: Platform, tmp_path: Path):
    result = tidal("--server", platform.admin, "get", "services", env=stranger_env(tmp_path))
    assert result.returncode == 1
    assert "unauthorized" in result.stderr and "--token or TIDAL_TOKEN" in result.stderr
    wrong = tidal("--server", platform.admin, "--token", "guess", "get", "services", env=os.environ)
    assert wrong.returncode == 1 and "unauthorized" in wrong.stderr
    env = stranger_env(tmp_path, TIDAL_TOKEN=platform.token)
    assert tidal("--server", platform.admin, "get", "services", env=env).returncode == 0


def test_a_gateway_process_needs_the_token(platform: Platform, tmp_path: Path):
    command = ["gateway", "--controller", platform.admin, "--port", str(free_port())]
    result = tidal(*command, env=stranger_env(tmp_path), timeout=30)
    assert result.returncode == 1
    assert "refused this gateway (401)" in result.stderr


def test_metrics_stay_open_and_can_be_closed(platform: Platform, tmp_path: Path):
    assert platform.api("GET", "/metrics", token=False)[0] == 200
    closed = Platform(tmp_path, args=("--protect-metrics",)).start()
    try:
        assert closed.api("GET", "/metrics", token=False)[0] == 401
        assert closed.api("GET", "/metrics")[0] == 200
    finally:
        closed.stop()


def test_the_default_data_dir_is_found_from_its_folder(tmp_path: Path):
    admin_port, port = free_port(), free_port()
    env = stranger_env(tmp_path)
    up = subprocess.Popen(
        [
            *(sys.executable, "-m", "tidal", "up", "--port", str(port)),
            *("--admin-port", str(admin_port), "--kube-port", "0"),
        ],
        cwd=tmp_path,
        env={**env, "XDG_CONFIG_HOME": str(tmp_path / "up-home")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server = f"http://127.0.0.1:{admin_port}"
        wait_until(lambda: (tmp_path / ".tidal" / "admin-token").exists(), 30, "the token")

        def answers() -> bool:
            return (
                tidal("--server", server, "get", "services", env=env, cwd=tmp_path).returncode == 0
            )

        wait_until(answers, 30, "the CLI to get in with ./.tidal/admin-token", period=0.5)
        elsewhere = tidal("--server", server, "get", "services", env=env, cwd=tmp_path / "..")
        assert elsewhere.returncode == 1 and "unauthorized" in elsewhere.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with the `cryptography` package."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def issued_by_a_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1 that a private CA issued: (certificate, key, CA)."""
    files = ensure_local_tls(directory)
    return files.cert, files.key, files.ca_cert


@pytest.mark.parametrize("issued", ["self-signed", "by a private CA"])
def test_tls_on_both_listeners(tmp_path: Path, issued: str):
    if issued == "self-signed":
        cert, key = self_signed(tmp_path)
        ca = cert
    else:  # the platform's own processes trust the certificate itself, not its issuer
        cert, key, ca = issued_by_a_ca(tmp_path / "pki")
    p = Platform(tmp_path, args=("--tls-cert", str(cert), "--tls-key", str(key)))
    p._healthy = lambda: _tls_healthy(p, ca)  # type: ignore[method-assign]
    p.admin = p.admin.replace("http:", "https:")
    p.start()
    try:
        p.apply(hello_service("secure"))  # the CLI trusts the recorded certificate by itself
        p.wait_ready("secure")
        request = urllib.request.Request(
            f"https://127.0.0.1:{p.port}/", headers={"Host": host("secure")}
        )
        trusted = ssl.create_default_context(cafile=str(ca))
        with urllib.request.urlopen(request, context=trusted, timeout=30) as response:
            assert response.status == 200 and b"secure-00001" in response.read()
        env = stranger_env(tmp_path, TIDAL_TOKEN=p.token)
        untrusted = tidal("--server", p.admin, "get", "services", env=env)
        assert untrusted.returncode == 1 and "--ca-cert" in untrusted.stderr
        trusting = tidal("--server", p.admin, "--ca-cert", str(cert), "get", "services", env=env)
        assert trusting.returncode == 0 and "secure" in trusting.stdout
        with pytest.raises((OSError, http.client.HTTPException)):  # no plain HTTP on TLS
            p.api("GET", "/healthz")
        # kubectl goes to the admin listener itself, trusting the given certificate.
        kube = yaml.safe_load((p.data_dir / "kubeconfig").read_text())["clusters"][0]["cluster"]
        assert kube["server"] == p.admin
        assert base64.b64decode(kube["certificate-authority-data"]) == cert.read_bytes()
        assert not (p.data_dir / "tls").exists()  # no CA of its own is needed
    finally:
        p.stop()


def _tls_healthy(p: Platform, cert: Path) -> bool:
    assert p.process is not None
    if p.process.poll() is not None:
        raise AssertionError(f"tidal up exited: {p.log_path.read_text()[-2000:]}")
    context = ssl.create_default_context(cafile=str(cert))
    try:
        with urllib.request.urlopen(f"{p.admin}/healthz", context=context, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
