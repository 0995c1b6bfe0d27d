"""Run the real platform (`tidal up` in a child process) and talk to it as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
HELLO_DIR = REPO / "examples" / "hello"

# Short windows so that scale-to-zero happens within a test (defaults: 60 s and 30 s).
FAST_AUTOSCALER = {"stable-window": "6s", "scale-to-zero-grace-period": "1s"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubectl_minor() -> int:
    """The installed kubectl's minor version (32 for 1.32); 0 without one."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return 0
    out = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30
    ).stdout
    return int(re.sub(r"\D", "", json.loads(out)["clientVersion"]["minor"]) or 0)


def wait_until(check: Callable[[], Any], timeout: float, message: str, period: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(period)


def hello_service(
    name: str,
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    cc: int = 0,
    traffic: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Knative Service running examples/hello."""
    container: dict[str, Any] = {
        "command": ["python", "app.py"],
        "workingDir": str(HELLO_DIR),
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    doc: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"containerConcurrency": cc, "containers": [container], **spec},
            }
        },
    }
    if traffic is not None:
        doc["spec"]["traffic"] = traffic
    return doc


class Platform:
    """`tidal up` on free ports with its own data dir and config. Its admin token is `token`
    once started; `env` (a config home of its own) lets any `tidal` process the test starts find
    the token as a user's CLI would, and `api()` sends it."""

    def __init__(
        self, workdir: Path, config: dict[str, Any] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.args = args  # more `tidal up` flags
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(workdir / "config")}
        self.token = ""
        self.data_dir = workdir / "data"
        self.config_path = workdir / "tidal.yaml"
        self.config_path.write_text(yaml.safe_dump(config or {"autoscaler": FAST_AUTOSCALER}))
        self.port = free_port()
        self.admin_port = free_port()
        self.gateway = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "platform.log"

    def start(self) -> Platform:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidal",
                "up",
                "--config",
                str(self.config_path),
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--admin-port",
                str(self.admin_port),
                "--kube-port",
                "0",  # kubectl's TLS listener on any free port; the kubeconfig names it
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env,
        )
        wait_until(self._healthy, 30, "tidal up to answer /healthz")
        self.token = (self.data_dir / "admin-token").read_text().strip()
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"tidal up exited: {self.log_path.read_text()[-2000:]}")
        try:
            return self.api("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # -- the user's tools ---------------------------------------------------------------------

    def cli(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "tidal", "--server", self.admin, *args],
            capture_output=True,
            text=True,
            timeout=60,
            input=stdin,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tidal {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def apply(self, *docs: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        path = self.workdir / f"apply-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump_all(list(docs)))
        return self.cli("apply", "-f", str(path), check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.cli("get", *args, "-o", "json").stdout)

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: bool = True,
    ) -> tuple[int, bytes]:
        """A raw admin API call, with the token unless `token` is False; a non-bytes `body` is
        sent as JSON."""
        sent = dict(headers or {})
        if token and self.token:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _kubectl_argv(self, *args: str) -> list[str]:
        kubectl = shutil.which("kubectl")
        assert kubectl is not None, "kubectl is not installed"
        return [kubectl, "--kubeconfig", str(self.data_dir / "kubeconfig"), *args]

    def kubectl(self, *args: str) -> str:
        """What the real kubectl prints, with this platform's kubeconfig; it must succeed."""
        result = subprocess.run(
            self._kubectl_argv(*args),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(self.workdir)},
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    @contextlib.contextmanager
    def port_forward(self, pod: str, port: int) -> Iterator[tuple[int, subprocess.Popen[str]]]:
        """`kubectl port-forward pod/POD :PORT` while the block runs: the local port it
        listens on, and the kubectl process (its stderr says what went wrong)."""
        assert kubectl_minor() >= 31, "port-forward needs kubectl 1.31 or newer"
        forward = subprocess.Popen(
            self._kubectl_argv("port-forward", f"pod/{pod}", f":{port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HOME": str(self.workdir)},
        )
        try:
            assert forward.stdout is not None
            line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:NNNN -> PORT"
            found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> ", line)
            if not found:
                forward.kill()
                raise AssertionError(f"kubectl port-forward: {line}{forward.communicate()[1]}")
            yield int(found.group(1)), forward
        finally:
            forward.kill()
            forward.wait()

    def exec_in_pod(
        self,
        pod: str,
        *command: str,
        container: str | None = None,
        stdin: bytes = b"",
        tty: bool = False,
    ) -> tuple[bytes, bytes, dict[str, Any]]:
        """`kubectl exec`'s protocol spoken directly (tidal.controller.kubeapi.pod_exec), for
        what kubectl cannot do without a terminal: the command's stdout, stderr (none with a
        tty: it all comes on stdout) and the Status that ends the stream."""

        async def run() -> dict[int, bytes]:
            params = [("command", part) for part in command]
            params += [("stdin", "true"), ("stdout", "true"), ("tty", str(tty).lower())]
            params += [("stderr", str(not tty).lower())]
            params += [("container", container)] if container else []
            url = f"{self.admin}/api/v1/namespaces/default/pods/{pod}/exec"
            received = {1: b"", 2: b"", 3: b""}
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(
                    url,
                    params=params,
                    protocols=("v5.channel.k8s.io",),
                    headers={"Authorization": f"Bearer {self.token}"},
                ) as ws,
            ):
                if tty:
                    await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 30}).encode())
                if stdin:
                    await ws.send_bytes(b"\x00" + stdin)
                await ws.send_bytes(b"\xff\x00")  # the end of stdin
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        received[message.data[0]] += message.data[1:]
            return received

        received = asyncio.run(asyncio.wait_for(run(), 60))
        return received[1], received[2], json.loads(received[3])

    def request(
        self,
        host: str,
        path: str = "/",
        method: str = "GET",
        timeout: float = 60,
        body: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Host": host})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def replicas(self, service: str) -> list[dict[str, Any]]:
        return [r for r in self.get_json("replicas")["items"] if r["service"] == service]

    def ready_replicas(self, service: str, revision: str | None = None) -> int:
        return sum(
            1
            for r in self.replicas(service)
            if r["state"] == "Ready" and revision in (None, r["revision"])
        )

    def service(self, name: str) -> dict[str, Any]:
        return self.get_json("services", name)

    def revision(self, name: str) -> dict[str, Any]:
        return self.get_json("revisions", name)

    def wait_ready(self, name: str, timeout: float = 30) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            svc = self.service(name)
            conditions = svc.get("status", {}).get("conditions", [])
            return svc if any(c["status"] == "True" for c in conditions) else None

        return wait_until(ready, timeout, f"service {name} to be ready", period=0.2)


def host(service: str, tag: str | None = None, namespace: str = "default") -> str:
    prefix = f"{tag}-{service}" if tag else service
    return f"{prefix}.{namespace}.example.com"


async def concurrent_gets(
    gateway: str,
    host_header: str,
    count: int,
    path: str = "/",
    timeout: float = 60,
    concurrency: int | None = None,
) -> list[tuple[int, str, str]]:
    """`count` requests, all at once or `concurrency` at a time over keep-alive connections;
    returns (status, X-Tidal-Revision, body) for each."""
    connector = aiohttp.TCPConnector(limit=concurrency or 0, force_close=concurrency is None)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def one() -> tuple[int, str, str]:
            async with session.get(gateway + path, headers={"Host": host_header}) as response:
                body = await response.text()
                return response.status, response.headers.get("X-Tidal-Revision", ""), body

        return await asyncio.gather(*(one() for _ in range(count)))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def others_can_read(path: Path) -> bool:
    """Whether a process of another user (a replica run as nobody) can read `path`: every
    directory above it searchable by others. A checkout in a private directory is not (`mktemp
    -d` makes one 0700), and a test that runs a replica as nobody from it cannot start one."""
    path = path.resolve()
    if not os.stat(path).st_mode & 0o004:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


NOT_FOR_OTHERS = "the checkout is in a directory other users cannot enter (e.g. mktemp -d's 0700)"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


class Load:
    """Closed-loop load in a background thread: `concurrency` clients each sending requests
    back to back; the level can change while it runs. Collects every status code."""

    def __init__(self, gateway: str, host_header: str, path: str) -> None:
        import threading

        self.gateway, self.host_header, self.path = gateway, host_header, path
        self.concurrency = 0
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self, concurrency: int) -> Load:
        self.concurrency = concurrency
        self._thread.start()
        return self

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.statuses

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def client(index: int) -> None:
                while not self._stop.is_set():
                    if index >= self.concurrency:
                        await asyncio.sleep(0.05)
                        continue
                    url = self.gateway + self.path
                    async with session.get(url, headers={"Host": self.host_header}) as response:
                        await response.read()
                        self.statuses.append(response.status)

            await asyncio.gather(*(client(i) for i in range(32)))


FOREIGN_UID = "0b7c4a52-1d1c-4a43-9a57-6d1f0b2b1a11"


def knative_export(name):
    """The service as `kubectl get ksvc NAME -o yaml` prints it on a Knative cluster: server
    metadata of that cluster, Knative's defaults filled in, Go's `creationTimestamp: null`."""
    doc = hello_service(name)
    doc["metadata"].update(
        uid=FOREIGN_UID,
        resourceVersion="12345",
        generation=3,
        creationTimestamp="2026-11-01T10:00:00Z",
        selfLink=f"/apis/serving.knative.dev/v1/namespaces/default/services/{name}",
        managedFields=[{"manager": "kubectl-client-side-apply", "operation": "Update"}],
        annotations={
            "serving.knative.dev/creator": "admin@example.com",
            "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Service"}',
        },
    )
    template = doc["spec"]["template"]
    template["metadata"]["creationTimestamp"] = None
    template["spec"].update(enableServiceLinks=False, timeoutSeconds=300)
    template["spec"]["containers"][0].update(
        name="user-container",
        readinessProbe={"successThreshold": 1, "tcpSocket": {"port": 0}},
        resources={},
        terminationMessagePath="/dev/termination-log",
        terminationMessagePolicy="FallbackToLogsOnError",
        imagePullPolicy="IfNotPresent",
    )
    doc["spec"]["traffic"] = [{"latestRevision": True, "percent": 100}]
    doc["status"] = {"url": f"http://{name}.default.svc.cluster.example", "observedGeneration": 3}
    return doc
