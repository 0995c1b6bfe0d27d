"""Image-only Knative manifests end to end: `tidal up`, the CLI and the gateway, with podman (or
docker) running the example image built here. Skipped, with the reason, only where no engine can
be had."""

from __future__ import annotations

import base64
import collections
import http.client
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import (
    Platform,
    concurrent_gets,
    host,
    kubectl_minor,
    run,
    wait_until,
)
from tests.runtime.registry import Registry
from tests.runtime.test_container import ENGINE, load_example_build
from tidal.runtime.engine import DATA_DIR_LABEL, REVISION_LABEL

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "container"
VOLUMES_EXAMPLE = EXAMPLES / "volumes.yaml"
SIDECAR_EXAMPLE = EXAMPLES / "sidecar.yaml"
INIT_EXAMPLE = EXAMPLES / "init.yaml"

pytestmark = pytest.mark.skipif(
    ENGINE is None, reason="no container engine: podman is not installed, docker has no daemon"
)


@pytest.fixture(scope="module")
def image() -> str:
    assert ENGINE is not None
    return load_example_build().ensure_image(ENGINE)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = Platform(tmp_path_factory.mktemp("containers")).start()
    yield p
    p.stop()
    assert containers(p.data_dir) == [], "tidal up left containers behind"


def containers(data_dir: Path, revision: str | None = None) -> list[str]:
    assert ENGINE is not None
    args = [ENGINE, "ps", "-aq", "--filter", f"label={DATA_DIR_LABEL}={data_dir.resolve()}"]
    if revision is not None:
        args += ["--filter", f"label={REVISION_LABEL}=default/{revision}"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()


def image_service(
    name: str,
    image: str,
    env: dict[str, str] | None = None,
    traffic: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    **container: Any,
) -> dict[str, Any]:
    """A Knative Service as a cluster would take it: an image, no command."""
    doc: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "containers": [
                        {
                            "image": image,
                            "imagePullPolicy": "Never",
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                            **container,
                        }
                    ]
                },
            }
        },
    }
    if traffic is not None:
        doc["spec"]["traffic"] = traffic
    return doc


def variables(body: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)


def test_image_only_service_serves_splits_scales_to_zero_and_back_and_deletes(
    platform: Platform, image: str
) -> None:
    out = platform.apply(image_service("boxed", image, {"GREETING": "one"})).stdout
    assert "revision boxed-00001" in out
    status, headers, body = platform.request(host("boxed"), "/cgi-bin/env")
    assert status == 200 and headers["X-Tidal-Revision"] == "boxed-00001"
    env = variables(body)
    assert env["K_REVISION"] == "boxed-00001" and env["K_SERVICE"] == "boxed"
    assert env["PORT"] == "8080" and env["GREETING"] == "one"
    assert len(containers(platform.data_dir, "boxed-00001")) == 1
    replica = platform.replicas("boxed")[0]
    assert replica["state"] == "Ready" and replica["startupSeconds"] > 0

    # A second revision with a command, in a container as its template asks; half the traffic.
    split = [
        {"revisionName": "boxed-00001", "percent": 50},
        {"latestRevision": True, "percent": 50},
    ]
    second = image_service(
        "boxed",
        image,
        {"GREETING": "two"},
        traffic=split,
        annotations={"tidal.dev/runtime": "container"},
        command=["/bin/sh", "/server.sh"],
        args=["second"],
    )
    platform.apply(second)
    wait_until(lambda: platform.ready_replicas("boxed", "boxed-00002"), 30, "boxed-00002 ready")
    results = run(
        concurrent_gets(platform.gateway, host("boxed"), 60, "/cgi-bin/env", concurrency=4)
    )
    assert {status for status, _, _ in results} == {200}
    served = collections.Counter(variables(body.encode())["K_REVISION"] for _, _, body in results)
    assert set(served) == {"boxed-00001", "boxed-00002"} and min(served.values()) >= 15, served
    assert all(revision == variables(body.encode())["K_REVISION"] for _, revision, body in results)
    assert {
        variables(body.encode())["ARGS"] for _, revision, body in results if revision.endswith("2")
    } == {"second"}

    # Idle: both revisions scale to zero and their containers are gone.
    wait_until(lambda: not platform.replicas("boxed"), 40, "boxed to scale to zero", period=0.5)
    assert containers(platform.data_dir) == []

    # And back: the first request waits for a container to start.
    status, headers, body = platform.request(host("boxed", namespace="default"), "/cgi-bin/env")
    assert status == 200 and variables(body)["K_REVISION"] == headers["X-Tidal-Revision"]
    assert containers(platform.data_dir, headers["X-Tidal-Revision"])

    logs = platform.cli("logs", "boxed", "--revision", "boxed-00001").stdout
    assert "listening on 8080 as user 0 in /" in logs

    platform.cli("delete", "service", "boxed")
    wait_until(lambda: not containers(platform.data_dir), 30, "containers of boxed to go")


def test_missing_image_fails_the_revision_with_the_reason(platform: Platform) -> None:
    platform.apply(image_service("absent", "localhost/tidal-absent:1"))

    def failed() -> dict[str, Any] | None:
        conditions = platform.revision("absent-00001")["status"].get("conditions", [])
        return next((c for c in conditions if c["status"] == "False"), None)

    condition = wait_until(failed, 30, "absent-00001 to fail", period=0.3)
    assert (
        "'localhost/tidal-absent:1' is not present and imagePullPolicy is Never"
        in (condition["message"])
    )
    status, _, body = platform.request(host("absent"))
    assert status == 503 and b"localhost/tidal-absent:1" in body
    described = platform.cli("describe", "service", "absent").stdout
    assert "imagePullPolicy is Never" in described

    platform.apply(
        image_service("unpullable", "registry.invalid/acme/absent:1", imagePullPolicy="Always")
    )
    message = wait_until(
        lambda: (
            platform.service("unpullable")["status"]["conditions"][0].get("message", "")
            if platform.service("unpullable")["status"]["conditions"][0]["status"] == "False"
            else None
        ),
        60,
        "unpullable to fail",
        period=0.3,
    )
    assert "cannot pull image 'registry.invalid/acme/absent:1': " in message
    assert containers(platform.data_dir) == []


def test_killed_platform_leaves_no_container_running(tmp_path: Path, image: str) -> None:
    platform = Platform(tmp_path).start()
    try:
        platform.apply(image_service("orphan", image))
        platform.wait_ready("orphan")
        assert containers(platform.data_dir)
        platform.stop(kill=True)
        wait_until(lambda: not containers(platform.data_dir), 20, "the watcher to remove them")
        left = platform.data_dir / "volumes" / "default" / "orphan-00001-dead00" / "token"
        left.mkdir(parents=True)
        (left / "token").write_text("s3cret")
        # The next start finds the service again and runs it in a new container, and removes
        # the volumes of replicas that the killed platform left.
        platform.start()
        status, headers, _ = platform.request(host("orphan"), "/cgi-bin/env")
        assert status == 200 and headers["X-Tidal-Revision"] == "orphan-00001"
        assert not left.parent.exists()
        # A container that dies is replaced, like a crashed process.
        (first,) = containers(platform.data_dir)
        assert ENGINE is not None
        subprocess.run([ENGINE, "kill", first], check=True, capture_output=True)
        wait_until(
            lambda: (
                containers(platform.data_dir) not in ([], [first])
                and platform.ready_replicas("orphan") == 1
            ),
            30,
            "a replacement container",
        )
        assert platform.request(host("orphan"), "/cgi-bin/env")[0] == 200
    finally:
        platform.stop()
    assert containers(platform.data_dir) == []


def test_volumes_mount_secrets_configmaps_and_empty_dirs_into_the_container(
    platform: Platform, image: str
) -> None:
    """The example's volumes (a token, a settings file by subPath, a model cache, shared memory)
    through `tidal apply` and the gateway; gone with the replica."""
    secret, config, doc = yaml.safe_load_all(VOLUMES_EXAMPLE.read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
    platform.apply(secret, config, doc)
    status, _, body = platform.request(host("mounted"), "/cgi-bin/report")
    assert status == 200, body
    seen = variables(body)
    assert seen["token"] == "hf_example_token" and seen["token_mode"] == "400"
    assert seen["settings"] == "model: small" and seen["token_writable"] == "no"
    assert seen["shm"].startswith("tmpfs rw,") and "size=65536k" in seen["shm"]
    assert seen["requests_before"] == "0"  # the emptyDir keeps what the replica writes
    again = variables(platform.request(host("mounted"), "/cgi-bin/report")[2])
    assert again["requests_before"] == "1"
    [replica] = platform.replicas("mounted")
    folder = platform.data_dir / "volumes" / "default" / replica["name"]
    assert (folder / "token" / "token").read_text() == "hf_example_token"

    # A rotated token and new settings reach the running replica, as the kubelet updates a
    # pod's volumes; a file mounted by subPath keeps what it had, as on Kubernetes.
    secret["stringData"]["token"] = "hf_rotated"
    config["data"]["llm.yaml"] = "model: large"
    platform.apply(secret, config)
    seen = variables(platform.request(host("mounted"), "/cgi-bin/report")[2])
    assert seen["token"] == "hf_rotated" and seen["settings"] == "model: small"
    assert [r["name"] for r in platform.replicas("mounted")] == [replica["name"]]

    platform.cli("delete", "service", "mounted")
    wait_until(lambda: not folder.exists(), 30, "the replica's volumes to be removed")
    assert containers(platform.data_dir, "mounted-00001") == []


@pytest.mark.skipif(ENGINE != "podman", reason="the test registry is served to podman")
def test_a_private_image_is_pulled_with_its_image_pull_secret(tmp_path: Path, image: str) -> None:
    """imagePullSecrets: the Secret `kubectl create secret docker-registry` makes lets the engine
    pull from a registry that wants credentials, named by the revision or by its service
    account; a revision whose Secret is missing fails, saying the registry's answer and which
    Secret was not found."""
    assert ENGINE is not None
    with Registry(ENGINE, image, tmp_path, "tidal", "s3cret") as registry:
        (tmp_path / "platform").mkdir()
        platform = Platform(tmp_path / "platform")
        platform.env["CONTAINERS_REGISTRIES_CONF"] = str(registry.registries_conf(tmp_path))
        platform.start()
        try:
            auth = base64.b64encode(b"tidal:s3cret").decode()
            config = {"auths": {registry.address: {"auth": auth}}}
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "registry"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": json.dumps(config)},
            }
            private = image_service("private", registry.reference, imagePullPolicy="Always")
            private["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "registry"}]
            platform.apply(secret, private)
            status, headers, _ = platform.request(host("private"), "/cgi-bin/env")
            assert status == 200 and headers["X-Tidal-Revision"] == "private-00001"
            subprocess.run([ENGINE, "rmi", "--force", registry.reference], capture_output=True)

            # A revision with no imagePullSecrets of its own pulls with its service account's,
            # as the ServiceAccount admission gives them to a pod.
            account = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "puller"},
                "imagePullSecrets": [{"name": "registry"}],
            }
            accounted = image_service("accounted", registry.reference, imagePullPolicy="Always")
            accounted["spec"]["template"]["spec"]["serviceAccountName"] = "puller"
            platform.apply(account, accounted)
            status, headers, _ = platform.request(host("accounted"), "/cgi-bin/env")
            assert status == 200 and headers["X-Tidal-Revision"] == "accounted-00001"
            assert "puller" in platform.cli("get", "sa").stdout

            denied = image_service("denied", registry.reference, imagePullPolicy="Always")
            denied["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "absent"}]
            refused_before = registry.refused
            platform.apply(denied)

            def failure() -> str | None:
                condition = platform.service("denied")["status"]["conditions"][0]
                return condition.get("message", "") if condition["status"] == "False" else None

            message = wait_until(failure, 60, "denied to fail", period=0.3)
            assert "unauthorized" in message, message
            assert 'imagePullSecrets: secret "absent" not found' in message
            assert registry.refused > refused_before
        finally:
            platform.stop()
            subprocess.run([ENGINE, "rmi", "--force", registry.reference], capture_output=True)


def test_a_claim_keeps_what_one_replica_wrote_for_the_next(platform: Platform, image: str) -> None:
    """A persistentVolumeClaim as a model cache: what a first service's replica downloads into
    it is there for a replica of another service, after the first is gone."""
    claim = [{"name": "models", "persistentVolumeClaim": {"claimName": "model-cache"}}]
    download = "echo weights > /models/model.bin; exec /bin/sh /server.sh"
    writer = image_service(
        "writer",
        image,
        command=["/bin/sh", "-c", download],
        volumeMounts=[{"name": "models", "mountPath": "/models"}],
    )
    writer["spec"]["template"]["metadata"]["annotations"]["tidal.dev/runtime"] = "container"
    writer["spec"]["template"]["spec"]["volumes"] = claim
    platform.apply(writer)
    assert platform.request(host("writer"), "/cgi-bin/env")[0] == 200
    folder = platform.data_dir / "claims" / "default" / "model-cache"
    assert (folder / "model.bin").read_text() == "weights\n"
    platform.cli("delete", "service", "writer")
    wait_until(lambda: not containers(platform.data_dir, "writer-00001"), 30, "writer gone")

    reader = image_service(
        "reader",
        image,
        volumeMounts=[{"name": "models", "mountPath": "/models", "readOnly": True}],
        # ready only once the cached file is there to load
        readinessProbe={"exec": {"command": ["cat", "/models/model.bin"]}},
    )
    reader["spec"]["template"]["spec"]["volumes"] = claim
    platform.apply(reader)
    assert platform.request(host("reader"), "/cgi-bin/env")[0] == 200
    platform.cli("delete", "service", "reader")
    assert folder.is_dir()  # claims are kept until removed by hand


def test_a_sidecar_shares_the_servers_network_and_volumes_and_ends_with_its_replica(
    platform: Platform, image: str
) -> None:
    """The sidecar example through `tidal apply` and the gateway: the sidecar writes the model
    into a shared emptyDir and answers the server on 127.0.0.1; a sidecar that dies is restarted
    in its replica, a server that dies has its replica replaced; a delete leaves no container
    (podman keeps a container whose network others joined unless it is removed after them)."""
    config, doc = yaml.safe_load_all(SIDECAR_EXAMPLE.read_text())
    for container in doc["spec"]["template"]["spec"]["containers"]:
        container["image"] = image
    platform.apply(config, doc)
    status, _, body = platform.request(host("with-sidecar"), "/cgi-bin/report")
    assert status == 200, body
    assert variables(body) == {"model": "model-v1", "sidecar": "ok from the puller"}
    [replica] = platform.replicas("with-sidecar")
    logs = platform.cli("logs", "with-sidecar").stdout
    assert f"==> with-sidecar-00001/{replica['name']}.puller <==\nmodel written" in logs
    assert len(containers(platform.data_dir, "with-sidecar-00001")) == 2
    # kubectl exec's protocol reaches each container (podman exec); kubectl names one (the
    # serving one by default), as the API server needs for a pod of several.
    listing = "cat /models/model.txt; cat /puller/status; exit 7"  # not mounted in the server
    out, err, status = platform.exec_in_pod(
        replica["name"], "sh", "-c", listing, container="server"
    )
    assert out == b"model-v1\n" and b"No such file" in err
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    out, _, status = platform.exec_in_pod(
        replica["name"],
        "sh",
        "-c",
        "cat > /models/note; cat /puller/status",
        container="puller",
        stdin=b"from exec",
    )
    assert out == b"ok from the puller" and status["status"] == "Success"
    out, _, _ = platform.exec_in_pod(
        replica["name"], "sh", "-c", "tty; id -u", container="server", tty=True
    )
    assert b"/dev/pts/" in out and out.endswith(b"\r\n0\r\n")  # a terminal, as root
    # kubectl port-forward reaches a port published nowhere: the sidecar's, in the pod's network.
    if kubectl_minor() >= 31:
        with platform.port_forward(replica["name"], 9000) as (local, _):
            connection = http.client.HTTPConnection("127.0.0.1", local, timeout=10)
            connection.request("GET", "/status")
            assert connection.getresponse().read() == b"ok from the puller"
            connection.close()

    def kill(container: str) -> None:
        assert ENGINE is not None
        subprocess.run([ENGINE, "kill", container], capture_output=True, check=True)

    def replaced(old: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            now = platform.replicas("with-sidecar")
            return next((r for r in now if r["name"] != old and r["state"] == "Ready"), None)

        return wait_until(ready, 60, f"a replica in place of {old}")

    # A sidecar that dies is restarted in place, as the kubelet restarts a pod's container: the
    # same replica (its server, its model in the emptyDir) counts a restart and serves again.
    pod_path = f"/api/v1/namespaces/default/pods/{replica['name']}"
    kill(f"tidal-default-{replica['name']}-puller")

    def restarted() -> dict[str, Any] | None:
        pod = json.loads(platform.api("GET", pod_path)[1])
        puller = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "puller")
        ready = [c["ready"] for c in pod["status"]["containerStatuses"]] == [True, True]
        return puller if puller["restartCount"] == 1 and ready else None

    puller = wait_until(restarted, 60, "the sidecar restarted in its replica")
    assert puller["lastState"] == {"terminated": {"exitCode": 137, "reason": "Error"}}
    query = f"fieldSelector=involvedObject.name={replica['name']}"
    events = json.loads(platform.api("GET", f"/api/v1/namespaces/default/events?{query}")[1])
    said = [(e["reason"], e["message"]) for e in events["items"]]
    message = f"Back-off restarting failed container puller in pod {replica['name']}"
    assert ("BackOff", f"{message} (it exited with code 137)") in said
    # Each instance logs afresh; `kubectl logs --previous` reads the one before the restart.
    logs = f"{pod_path}/log?container=puller"
    for query in ("", "&previous=true"):
        wait_until(
            lambda q=query: platform.api("GET", logs + q)[1].count(b"model written") == 1,
            10,
            f"one instance's lines in the log{query}",
        )
    status, body = platform.api("GET", f"{pod_path}/log?container=server&previous=true")
    assert status == 400
    assert 'previous terminated container "server"' in json.loads(body)["message"]
    listed = platform.cli("logs", "with-sidecar").stdout
    assert f"==> with-sidecar-00001/{replica['name']}.puller.previous <==" in listed
    [again] = platform.replicas("with-sidecar")
    assert (again["name"], again["state"], again["restarts"]) == (replica["name"], "Ready", 1)
    listed = platform.cli("get", "replicas").stdout.splitlines()
    assert listed[0].split()[3:5] == ["STATE", "RESTARTS"]
    assert [row.split()[3:5] for row in listed[1:]] == [["Ready", "1"]]
    report = variables(platform.request(host("with-sidecar"), "/cgi-bin/report")[2])
    assert report == {"model": "model-v1", "sidecar": "ok from the puller"}

    # The server dies with its sidecar running: the replica is replaced, and both containers
    # go, none is left behind.
    kill(f"tidal-default-{replica['name']}")
    replaced(replica["name"])
    wait_until(
        lambda: len(containers(platform.data_dir, "with-sidecar-00001")) == 2,
        30,
        "the dead replica's containers to be removed",
    )

    platform.cli("delete", "service", "with-sidecar")
    wait_until(
        lambda: not containers(platform.data_dir, "with-sidecar-00001"), 30, "its containers gone"
    )


def test_init_containers_run_to_completion_before_the_server_and_a_failed_one_says_why(
    platform: Platform, image: str
) -> None:
    """The init example through `tidal apply` and the gateway: the model the init container
    fetched is there when the server starts, and its log is kept; an init container that fails
    fails the revision with its exit code and last line, and its server never starts."""
    config, doc = yaml.safe_load_all(INIT_EXAMPLE.read_text())
    pod = doc["spec"]["template"]["spec"]
    for container in (*pod["initContainers"], *pod["containers"]):
        container["image"] = image
    platform.apply(config, doc)
    status, _, body = platform.request(host("initialized"), "/cgi-bin/report")
    assert status == 200, body
    seen = variables(body)
    assert seen["model"] == "model-v2" and seen["fetched_by"]
    [replica] = platform.replicas("initialized")
    logs = platform.cli("logs", "initialized").stdout
    assert f"==> initialized-00001/{replica['name']}.storage-initializer <==" in logs
    assert "fetched the model" in logs
    platform.cli("delete", "service", "initialized")

    failing = image_service(
        "uninitialized", image, annotations={"autoscaling.knative.dev/initial-scale": "1"}
    )
    failing["spec"]["template"]["spec"]["initContainers"] = [
        {
            "name": "fetch",
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["sh", "-c", "echo 'model not found' && exit 3"],
        }
    ]
    platform.apply(failing)

    def failed() -> dict[str, Any] | None:
        conditions = platform.revision("uninitialized-00001").get("status", {}).get("conditions")
        ready = next((c for c in conditions or [] if c["type"] == "Ready"), {})
        return ready if ready.get("status") == "False" else None

    ready = wait_until(failed, 60, "the revision to fail")
    assert ready["reason"] == "Init:Error", ready
    assert "init container fetch exited with code 3: model not found" in ready["message"]
    wait_until(
        lambda: not containers(platform.data_dir, "uninitialized-00001"), 30, "no container left"
    )
    platform.cli("delete", "service", "uninitialized")
