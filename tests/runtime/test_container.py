"""ContainerRuntime against the real engine, with the example image built here (no registry).

Skipped, with the reason, only where neither podman nor a running docker can be had; CI installs
podman. Each container start costs about half a second, so the tests are few.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from tidal.api.config import LogLimits
from tidal.runtime.base import (
    ContainerSpec,
    ImageSpec,
    MountSpec,
    ProbeSpec,
    Replica,
    ReplicaSpec,
    ReplicaState,
    SecurityContext,
    VolumeSpec,
)
from tidal.runtime.container import ContainerRuntime
from tidal.runtime.engine import DATA_DIR_LABEL

REPO = Path(__file__).resolve().parents[2]


def load_example_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tidal_example_build", REPO / "examples" / "container" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def usable_engine() -> str | None:
    """podman, or docker with a daemon that answers."""
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True
        )
        if probe.returncode == 0:
            return "docker"
    return None


ENGINE = usable_engine()
pytestmark = pytest.mark.skipif(
    ENGINE is None, reason="no container engine: podman is not installed, docker has no daemon"
)


@pytest.fixture(scope="module")
def image() -> str:
    assert ENGINE is not None
    return load_example_build().ensure_image(ENGINE)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ContainerRuntime]:
    assert ENGINE is not None
    rt = ContainerRuntime(tmp_path / "data", ENGINE, close_grace_s=1.0)
    yield rt
    await rt.close()


def spec_for(tmp_path: Path, image: ImageSpec, **fields: object) -> ReplicaSpec:
    values: dict[str, object] = {
        "replica_id": f"web-00001-{time.monotonic_ns() % 10**6}",
        "namespace": "default",
        "service": "web",
        "revision": "web-00001",
        "command": (),
        "env": {"K_SERVICE": "web", "K_CONFIGURATION": "web", "K_REVISION": "web-00001"},
        "working_dir": None,
        "probe": ProbeSpec(kind="http", path="/"),
        "log_path": tmp_path / "logs" / "web.log",
        "image": image,
        **fields,
    }
    return ReplicaSpec(**values)  # type: ignore[arg-type]


class Events:
    def __init__(self) -> None:
        self.states: list[ReplicaState] = []
        self.changed = asyncio.Event()

    def __call__(self, replica: Replica) -> None:
        self.states.append(replica.state)
        self.changed.set()

    async def wait_for(self, state: ReplicaState, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while state not in self.states:
                self.changed.clear()
                await self.changed.wait()


def containers_of(data_dir: Path) -> list[str]:
    assert ENGINE is not None
    out = subprocess.run(
        [ENGINE, "ps", "-aq", "--filter", f"label={DATA_DIR_LABEL}={data_dir.resolve()}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def get(replica: Replica, path: str) -> str:
    url = f"http://{replica.host}:{replica.port}{path}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def test_container_serves_the_knative_contract_and_stops_cleanly(
    runtime: ContainerRuntime, tmp_path: Path, image: str
) -> None:
    spec = spec_for(
        tmp_path,
        ImageSpec(image, pull_policy="Never", args=("--model", "small")),
        env={"K_REVISION": "web-00001", "GREETING": "hi"},
        working_dir="/www",
        security=SecurityContext(run_as_user=1000),
    )
    events = Events()
    replica = await runtime.start(spec, events)
    await events.wait_for(ReplicaState.READY)
    body = await asyncio.to_thread(get, replica, "/cgi-bin/env")
    for line in ("K_REVISION=web-00001", "PORT=8080", "GREETING=hi", "UID=1000"):
        assert line in body.splitlines()
    assert "WORKDIR=/www" in body and "ARGS=--model small" in body
    assert replica.startup_seconds is not None and replica.startup_seconds > 0
    assert len(containers_of(tmp_path / "data")) == 1

    await runtime.stop(replica, grace_s=5)
    assert replica.state is ReplicaState.STOPPED
    assert containers_of(tmp_path / "data") == []
    assert "listening on 8080 as user 1000 in /www" in "\n".join(runtime.log_tail(spec, 20))


async def test_a_sidecar_that_keeps_exiting_is_restarted_in_place_with_back_off(
    runtime: ContainerRuntime, tmp_path: Path, image: str
) -> None:
    """The kubelet's restart policy for a pod's container, once the replica has been ready:
    the first restart at once, then a back-off (CrashLoopBackOff); the replica stays, NotReady
    while its sidecar is down, and a stop does not wait out the back-off."""
    sidecar = ContainerSpec(
        name="flaky",
        image=ImageSpec(
            image, pull_policy="Never", entrypoint=("/bin/sh", "-c", "sleep 1; exit 3")
        ),
        env={},
    )
    spec = spec_for(tmp_path, ImageSpec(image, pull_policy="Never"), sidecars=(sidecar,))
    events = Events()
    replica = await runtime.start(spec, events)
    await events.wait_for(ReplicaState.READY)
    async with asyncio.timeout(30):
        while replica.restarts.get("flaky", 0) < 2:
            await asyncio.sleep(0.05)
    assert replica.down == {"flaky": "CrashLoopBackOff"} and replica.last_exit == {"flaky": 3}
    assert replica.state is ReplicaState.NOT_READY and replica.probe_ready
    assert ReplicaState.READY in events.states  # it was, before its sidecar went down
    started = time.monotonic()
    await runtime.stop(replica, grace_s=5)
    assert time.monotonic() - started < 8  # not the 10 s back-off
    assert replica.state is ReplicaState.STOPPED and containers_of(tmp_path / "data") == []


async def test_a_sidecar_that_exits_before_its_replica_was_ready_fails_it(
    runtime: ContainerRuntime, tmp_path: Path, image: str
) -> None:
    sidecar = ContainerSpec(
        name="broken",
        image=ImageSpec(
            image, pull_policy="Never", entrypoint=("/bin/sh", "-c", "echo no; exit 3")
        ),
        env={},
    )
    never = ProbeSpec(kind="http", path="/not-there", period_s=1.0)
    spec = spec_for(
        tmp_path, ImageSpec(image, pull_policy="Never"), sidecars=(sidecar,), probe=never
    )
    events = Events()
    replica = await runtime.start(spec, events)
    await events.wait_for(ReplicaState.FAILED)
    assert replica.reason.startswith("sidecar container broken exited with code 3")
    assert replica.restarts == {} and containers_of(tmp_path / "data") == []


async def test_the_security_context_holds_inside_the_container(
    runtime: ContainerRuntime, tmp_path: Path, image: str
) -> None:
    """The restricted profile seen from inside (root without capabilities, no new privileges,
    a read-only root), and runAsNonRoot refusing an image that runs as root, with the
    kubelet's reason and words."""
    report = (
        "busybox grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
        "busybox touch /written 2>/dev/null || echo root-is-read-only; exec /bin/sh /server.sh"
    )
    restricted = SecurityContext(
        allow_privilege_escalation=False,
        drop_capabilities=("ALL",),
        read_only_root_filesystem=True,
    )
    entrypoint = ("/bin/sh", "-c", report)
    spec = spec_for(
        tmp_path, ImageSpec(image, pull_policy="Never", entrypoint=entrypoint), security=restricted
    )
    events = Events()
    replica = await runtime.start(spec, events)
    await events.wait_for(ReplicaState.READY)
    lines = runtime.log_tail(spec, 20)
    assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines, lines
    assert "root-is-read-only" in lines
    await runtime.stop(replica, grace_s=5)

    as_root = spec_for(
        tmp_path,
        ImageSpec(image, pull_policy="Never"),
        replica_id="web-00001-root",
        security=SecurityContext(run_as_non_root=True),
    )
    events = Events()
    replica = await runtime.start(as_root, events)
    await events.wait_for(ReplicaState.FAILED)
    assert replica.reason_code == "CreateContainerConfigError"
    assert replica.reason == (
        "securityContext.runAsNonRoot: container has runAsNonRoot and image will run as root"
    )
    assert containers_of(tmp_path / "data") == []


async def test_exec_probes_run_in_the_container(
    runtime: ContainerRuntime, tmp_path: Path, image: str
) -> None:
    """An exec readiness probe runs inside the container (its environment, its files); a
    failing exec startup probe kills the replica, with the command's own words."""
    in_container = ("/bin/sh", "-c", 'test "$K_REVISION" = web-00001 && test -x /bin/busybox')
    events = Events()
    ready = spec_for(
        tmp_path,
        ImageSpec(image, pull_policy="Never"),
        probe=ProbeSpec(kind="exec", command=in_container),
    )
    replica = await runtime.start(ready, events)
    await events.wait_for(ReplicaState.READY)
    await runtime.stop(replica, grace_s=5)

    events = Events()
    startup = ProbeSpec(kind="exec", command=("cat", "/model.bin"), period_s=0.2)
    never = spec_for(tmp_path, ImageSpec(image, pull_policy="Never"), startup=startup)
    replica = await runtime.start(never, events)
    await events.wait_for(ReplicaState.FAILED)
    assert ReplicaState.READY not in events.states
    assert replica.reason == (
        "killed after its startup probe failed 3 times in a row (exec cat /model.bin exited "
        "with code 1: cat: can't open '/model.bin': No such file or directory)"
    )
    assert containers_of(tmp_path / "data") == []


async def test_missing_image_with_pull_policy_never_fails_naming_it(
    runtime: ContainerRuntime, tmp_path: Path
) -> None:
    events = Events()
    spec = spec_for(tmp_path, ImageSpec("localhost/tidal-absent:1", pull_policy="Never"))
    replica = await runtime.start(spec, events)
    await events.wait_for(ReplicaState.FAILED)
    assert "'localhost/tidal-absent:1' is not present and imagePullPolicy is Never" in (
        replica.reason
    )


async def test_failed_pull_names_the_image_and_the_engine_message(
    runtime: ContainerRuntime, tmp_path: Path
) -> None:
    events = Events()
    spec = spec_for(tmp_path, ImageSpec("registry.invalid/acme/absent:1"))
    replica = await runtime.start(spec, events)
    phases = set()
    async with asyncio.timeout(60):
        while replica.state is ReplicaState.STARTING:
            phases.add(replica.phase)
            await asyncio.sleep(0.01)
    assert "Pulling" in phases  # what `tidal describe` shows meanwhile
    await events.wait_for(ReplicaState.FAILED)
    assert replica.reason.startswith("cannot pull image 'registry.invalid/acme/absent:1': ")
    assert len(replica.reason) > len("cannot pull image 'registry.invalid/acme/absent:1': ")
    assert "pulling image registry.invalid/acme/absent:1" in "\n".join(runtime.log_tail(spec, 5))


async def test_exit_of_the_container_is_reported_with_its_code(
    runtime: ContainerRuntime, tmp_path: Path, image: str
) -> None:
    events = Events()
    spec = spec_for(
        tmp_path,
        ImageSpec(image, pull_policy="Never", entrypoint=("/bin/sh", "-c", "echo bye; exit 3")),
    )
    replica = await runtime.start(spec, events)
    await events.wait_for(ReplicaState.FAILED)
    assert replica.exit_code == 3 and replica.reason == "container exited with code 3"
    assert "bye" in runtime.log_tail(spec, 5)
    assert containers_of(tmp_path / "data") == []


async def test_container_output_is_rotated_as_a_process_output_is(
    tmp_path: Path, image: str
) -> None:
    assert ENGINE is not None
    limits = LogLimits(max_bytes=4096, max_files=2)
    runtime = ContainerRuntime(tmp_path / "data", ENGINE, close_grace_s=1.0, log_limits=limits)
    events = Events()
    loud = "i=0; while [ $i -lt 3000 ]; do echo out $i; i=$((i+1)); done; exit 3"
    spec = spec_for(
        tmp_path, ImageSpec(image, pull_policy="Never", entrypoint=("/bin/sh", "-c", loud))
    )
    try:
        await runtime.start(spec, events)
        await events.wait_for(ReplicaState.FAILED)
        files = sorted(spec.log_path.parent.iterdir())
        assert [f.name for f in files] == ["web.log", "web.log.1"]
        assert all(f.stat().st_size <= 4096 for f in files)
        assert runtime.log_tail(spec, 2) == ["out 2998", "out 2999"]
    finally:
        await runtime.close()


async def test_an_empty_dir_over_its_size_limit_evicts_the_replica(
    tmp_path: Path, image: str
) -> None:
    """As the kubelet evicts a pod whose emptyDir outgrows its sizeLimit: killed, reason
    Evicted with the kubelet's message, its volumes removed."""
    assert ENGINE is not None
    runtime = ContainerRuntime(tmp_path / "data", ENGINE, close_grace_s=1.0, disk_check_s=0.2)
    fill = (
        "busybox dd if=/dev/zero of=/cache/blob bs=1024 count=2048 2>/dev/null; "
        "exec /bin/sh /server.sh"
    )
    spec = spec_for(
        tmp_path,
        ImageSpec(image, pull_policy="Never", entrypoint=("/bin/sh", "-c", fill)),
        volumes=(VolumeSpec("cache", size_limit=2**20),),
        mounts=(MountSpec("cache", "/cache"),),
    )
    events = Events()
    try:
        replica = await runtime.start(spec, events)
        await events.wait_for(ReplicaState.FAILED)
        assert replica.reason_code == "Evicted"
        assert replica.reason == 'Usage of EmptyDir volume "cache" exceeds the limit "1Mi".'
        assert not (tmp_path / "data" / "volumes" / "default" / spec.replica_id).exists()
        assert containers_of(tmp_path / "data") == []
    finally:
        await runtime.close()


async def test_sigterm_ignored_means_sigkill_after_the_grace_period(
    runtime: ContainerRuntime, tmp_path: Path, image: str
) -> None:
    stubborn = "trap '' TERM; httpd -f -p $PORT -h /www & while true; do sleep 1; done"
    spec = spec_for(
        tmp_path, ImageSpec(image, pull_policy="Never", entrypoint=("/bin/sh", "-c", stubborn))
    )
    events = Events()
    replica = await runtime.start(spec, events)
    await events.wait_for(ReplicaState.READY)
    started = time.monotonic()
    await runtime.stop(replica, grace_s=1)
    assert time.monotonic() - started >= 1.0
    assert replica.state is ReplicaState.STOPPED and replica.exit_code == 137
    assert containers_of(tmp_path / "data") == []


async def test_prepare_removes_containers_left_by_an_earlier_run(
    tmp_path: Path, image: str
) -> None:
    assert ENGINE is not None
    data_dir = (tmp_path / "data").resolve()
    subprocess.run(
        [ENGINE, "run", "-d", "--label", f"{DATA_DIR_LABEL}={data_dir}", image],
        check=True,
        capture_output=True,
    )
    assert len(containers_of(data_dir)) == 1
    runtime = ContainerRuntime(data_dir, ENGINE)
    assert (await runtime.prepare()).startswith(f"containers: {ENGINE}")
    assert containers_of(data_dir) == []
    assert await runtime.ready() is None  # the engine can start containers here
    await runtime.close()
