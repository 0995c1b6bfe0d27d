"""The container runtime's decisions without an engine: command lines (GPUs included), engine
choice, the host fix it names, and which manifests run as containers."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import runs_in_container, validate_service
from tidal.api.service import Container
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
from tidal.runtime.container import ContainerRuntime, HostRuntime, container_env, image_spec
from tidal.runtime.engine import (
    Engine,
    EngineError,
    engine_fix,
    find_engine,
    gpu_args,
    needs_image_user,
    non_root_problem,
    other_run_args,
    reaper_script,
    run_args,
    security_args,
    stop_args,
)

PODMAN = Engine("podman", "/usr/bin/podman")
DOCKER = Engine("docker", "/usr/bin/docker")


def replica_spec(
    devices: tuple[str, ...] = (), working_dir: str | None = None, log_path: Path | None = None
) -> ReplicaSpec:
    return ReplicaSpec(
        replica_id="web-00001-abc123",
        namespace="default",
        service="web",
        revision="web-00001",
        command=(),
        env={"K_REVISION": "web-00001", "CUDA_VISIBLE_DEVICES": "0"},
        working_dir=working_dir,
        probe=ProbeSpec(),
        log_path=log_path or Path("/tmp/tidal-test-container-args/x.log"),
        devices=devices,
        image=ImageSpec("localhost/web:1"),
    )


def test_run_args_publish_on_loopback_only_and_pass_the_knative_contract() -> None:
    spec = dataclasses.replace(
        replica_spec(working_dir="/srv"), security=SecurityContext(run_as_user=1000)
    )
    image = ImageSpec(
        "localhost/web:1",
        args=("--model", "small"),
        container_port=9000,
        cpu_limit=0.5,
        memory_limit=64 * 2**20,
    )
    args = run_args(PODMAN, spec, image, 41000, {"PORT": "9000"}, {"tidal.dev/replica": "r"}, {})
    assert args[:5] == [
        "/usr/bin/podman",
        "run",
        "--rm",
        "--name",
        f"tidal-default-{spec.replica_id}",
    ]
    pairs = list(itertools.pairwise(args))
    for pair in [
        ("--publish", "127.0.0.1:41000:9000"),
        ("--env", "PORT=9000"),
        ("--label", "tidal.dev/replica=r"),
        ("--workdir", "/srv"),
        ("--user", "1000"),
        ("--cpus", "0.5"),
        ("--memory", str(64 * 2**20)),
    ]:
        assert pair in pairs
    assert args[-3:] == ["localhost/web:1", "--model", "small"]  # args replace the image's CMD
    assert "--entrypoint" not in args


def test_a_sidecar_joins_the_serving_containers_network_and_publishes_nothing() -> None:
    sidecar = ContainerSpec(
        name="puller",
        image=ImageSpec("localhost/puller:1", entrypoint=("pull", "--to"), args=("/models",)),
        env={"K_REVISION": "web-00001"},
        working_dir="/work",
        security=SecurityContext(read_only_root_filesystem=True),
        mounts=(MountSpec("models", "/models"),),
    )
    spec = dataclasses.replace(
        replica_spec(devices=("0",)), volumes=(VolumeSpec("models"),), sidecars=(sidecar,)
    )
    sources = {"/models": Path("/data/volumes/models")}
    args = other_run_args(PODMAN, spec, sidecar, {"tidal.dev/replica": "r"}, sources)
    assert args[:5] == [
        "/usr/bin/podman",
        "run",
        "--rm",
        "--name",
        "tidal-default-web-00001-abc123-puller",
    ]
    pairs = list(itertools.pairwise(args))
    for pair in [
        ("--network", "container:tidal-default-web-00001-abc123"),
        ("--label", "tidal.dev/replica=r"),
        ("--env", "K_REVISION=web-00001"),
        ("--workdir", "/work"),
        ("--mount", "type=bind,source=/data/volumes/models,destination=/models"),
    ]:
        assert pair in pairs
    assert "--read-only" in args
    assert "--publish" not in args and "--device" not in args  # GPUs: the serving container's
    # The server is removed after its sidecars, not by its own `run` (which would wait for them).
    server = run_args(PODMAN, spec, ImageSpec("localhost/web:1"), 41000, {}, {}, {})
    assert server[:4] == ["/usr/bin/podman", "run", "--name", "tidal-default-web-00001-abc123"]
    assert args[-5:] == ["--entrypoint", "pull", "localhost/puller:1", "--to", "/models"]
    assert spec.log_paths() == [
        spec.log_path,
        spec.log_path.with_name(f"{spec.replica_id}.puller.log"),
        spec.log_path.with_name(f"{spec.replica_id}.puller.previous.log"),  # before a restart
    ]


def test_the_security_context_becomes_the_engines_options() -> None:
    restricted = SecurityContext(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        drop_capabilities=("ALL",),
        add_capabilities=("NET_BIND_SERVICE",),
        read_only_root_filesystem=True,
    )
    assert security_args(PODMAN, restricted, "1000") == [
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--read-only",
        "--read-only-tmpfs=false",  # no writable /tmp that a pod would not have
    ]
    assert security_args(DOCKER, SecurityContext(read_only_root_filesystem=True), "") == [
        "--read-only"
    ]
    unconfined = SecurityContext(seccomp_unconfined=True)
    assert security_args(PODMAN, unconfined, "") == ["--security-opt", "seccomp=unconfined"]
    # runAsGroup alone keeps the image's user, as the kubelet does
    group = SecurityContext(run_as_group=2000)
    assert security_args(PODMAN, group, "app:app") == ["--user", "app:2000"]
    assert security_args(PODMAN, group, "") == ["--user", "0:2000"]
    both = SecurityContext(run_as_user=1000, run_as_group=2000)
    assert security_args(PODMAN, both, "app") == ["--user", "1000:2000"]
    assert needs_image_user(group) and needs_image_user(SecurityContext(run_as_non_root=True))
    assert not needs_image_user(both) and not needs_image_user(SecurityContext())


@pytest.mark.parametrize(
    ("security", "image_user", "problem"),
    [
        (SecurityContext(), "", None),
        (SecurityContext(run_as_non_root=True), "1000", None),
        (SecurityContext(run_as_non_root=True), "1000:1000", None),
        (SecurityContext(run_as_non_root=True), "", "image will run as root"),
        (SecurityContext(run_as_non_root=True), "0:0", "image will run as root"),
        (SecurityContext(run_as_non_root=True), "app", "image has non-numeric user (app)"),
        (SecurityContext(run_as_non_root=True, run_as_user=0), "1000", "runAsUser breaks"),
        (SecurityContext(run_as_non_root=True, run_as_user=5), "", None),
    ],
)
def test_run_as_non_root_is_checked_as_the_kubelet_checks_it(
    security: SecurityContext, image_user: str, problem: str | None
) -> None:
    found = non_root_problem(security, image_user)
    assert found == problem if problem is None else problem in (found or "")


def test_command_replaces_the_entrypoint_and_args_follow_it() -> None:
    image = ImageSpec("img", entrypoint=("/bin/sh", "-c"), args=("echo hi",))
    args = run_args(PODMAN, replica_spec(), image, 1, {}, {}, {})
    assert args[-5:] == ["--entrypoint", "/bin/sh", "img", "-c", "echo hi"]


def test_gpus_reach_the_container_as_cdi_devices_or_docker_gpus() -> None:
    assert gpu_args(PODMAN, ("0", "3")) == [
        "--device",
        "nvidia.com/gpu=0",
        "--device",
        "nvidia.com/gpu=3",
    ]
    assert gpu_args(DOCKER, ("0", "3")) == ["--gpus", '"device=0,3"']
    assert gpu_args(PODMAN, ()) == gpu_args(DOCKER, ()) == []
    args = run_args(DOCKER, replica_spec(devices=("2",)), ImageSpec("img"), 1, {}, {}, {})
    assert args[args.index("--gpus") + 1] == '"device=2"'


def test_container_env_sets_port_to_the_container_port_and_drops_host_gpu_ids() -> None:
    env = container_env(replica_spec(devices=("1",)), ImageSpec("img", container_port=9000))
    assert env["PORT"] == "9000" and env["K_REVISION"] == "web-00001"
    assert "CUDA_VISIBLE_DEVICES" not in env  # the engine maps only the assigned GPU, as 0
    assert container_env(replica_spec(), ImageSpec("img"))["CUDA_VISIBLE_DEVICES"] == "0"


def test_stop_uses_the_engine_timeout_rounded_up_and_passes_over_a_name_that_is_gone() -> None:
    podman = ["/usr/bin/podman", "stop", "--ignore", "--time", "3", "c"]
    assert stop_args(PODMAN, ["c"], 2.5) == podman
    assert stop_args(DOCKER, ["c"], 0.0) == ["/usr/bin/docker", "stop", "--time", "0", "c"]


def test_reaper_removes_only_this_platforms_containers() -> None:
    script = reaper_script(PODMAN, Path("/data dir"), 4242)[-1]
    assert script.startswith("tail --pid=4242 -f /dev/null;")
    assert "label=tidal.dev/owner-pid=4242" in script
    assert "'label=tidal.dev/data-dir=/data dir'" in script  # quoted for the shell


def test_image_spec_from_a_manifest_container() -> None:
    container = Container.model_validate(
        {
            "image": "ghcr.io/acme/detector:1.4",
            "args": ["--fast"],
            "ports": [{"containerPort": 9000}],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
        }
    )
    spec = image_spec(container)
    assert spec == ImageSpec(
        "ghcr.io/acme/detector:1.4",
        pull_policy="IfNotPresent",
        args=("--fast",),
        container_port=9000,
        cpu_limit=0.5,
        memory_limit=64 * 2**20,
    )
    assert image_spec(Container(image="x", image_pull_policy="Never")).pull_policy == "Never"


def _fake_engines(tmp_path: Path, names: tuple[str, ...]) -> None:
    for name in names:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


@pytest.mark.parametrize(
    ("installed", "setting", "chosen"),
    [
        (("podman", "docker"), "auto", "podman"),
        (("docker",), "auto", "docker"),
        (("podman", "docker"), "docker", "docker"),
    ],
)
def test_engine_choice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    installed: tuple[str, ...],
    setting: str,
    chosen: str,
) -> None:
    _fake_engines(tmp_path, installed)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = find_engine(setting)
    assert engine.name == chosen and engine.path == str(tmp_path / chosen)


def test_no_engine_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError, match="apt-get install podman runc"):
        find_engine("auto")
    with pytest.raises(EngineError, match="unknown container engine 'rkt'"):
        find_engine("rkt")


def test_engine_fix_names_the_setting_the_error_points_at() -> None:
    rlimit = (
        "Error: runc: runc create failed: unable to start container process: error during "
        "container init: error setting rlimits for ready process: error setting rlimit type 7: "
        "operation not permitted: OCI permission denied"
    )
    fix = engine_fix(rlimit)
    assert "default_ulimits = []" in fix and "/etc/containers/containers.conf" in fix
    assert "cgroup_manager" not in fix and rlimit in fix
    systemd = engine_fix("Error: sd-bus call: Interactive authentication required")
    assert 'cgroup_manager = "cgroupfs"' in systemd and "default_ulimits" not in systemd
    unknown = engine_fix("Error: something else")
    for line in ("default_ulimits = []", 'cgroup_manager = "cgroupfs"', 'runtime = "runc"'):
        assert line in unknown


# -- which manifests run as containers ---------------------------------------------------------


def _service(container: dict[str, Any], annotations: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"containers": [container]},
            }
        },
    }


def _valid(doc: dict[str, Any]) -> Any:
    return validate_service(copy.deepcopy(doc), AutoscalerConfig(), require_command=False)


def test_image_only_manifest_is_valid_and_runs_in_a_container() -> None:
    valid = _valid(_service({"image": "ghcr.io/acme/detector:1.4"}))
    container = valid.service.spec.template.spec.containers[0]
    assert runs_in_container(container, {})


def test_a_command_keeps_a_process_unless_the_template_asks_for_a_container() -> None:
    container = {"image": "img", "command": ["python", "app.py"]}
    plain = _valid(_service(container)).service.spec.template.spec.containers[0]
    assert not runs_in_container(plain, {})
    annotations = {"tidal.dev/runtime": "container"}
    asked = _valid(_service(container, annotations)).service.spec.template
    assert runs_in_container(asked.spec.containers[0], asked.metadata.annotations)
    assert not runs_in_container(Container(command=["x"]), annotations)


@pytest.mark.parametrize(
    ("container", "annotations", "message"),
    [
        ({"image": "img"}, {"tidal.dev/runtime": "vm"}, "must be container or process, got 'vm'"),
        ({"command": ["x"]}, {"tidal.dev/runtime": "container"}, "needs spec.template"),
        ({"image": "img"}, {"tidal.dev/runtime": "process"}, "a process runtime needs"),
        ({"image": "img", "imagePullPolicy": "Sometimes"}, {}, "'Sometimes'"),
    ],
)
def test_bad_runtime_settings_are_named(
    container: dict[str, Any], annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSpec) as info:
        _valid(_service(container, annotations))
    assert message in str(info.value)
    field = "imagePullPolicy" if "imagePullPolicy" in container else "tidal.dev/runtime"
    assert field in info.value.field


# -- dispatch ------------------------------------------------------------------------------------


class _Recorder:
    requires_command = True
    keeps_log_files = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self, spec: ReplicaSpec, on_change: Any) -> Replica:
        self.calls.append(f"start {spec.replica_id}")
        return Replica(spec=spec, state=ReplicaState.STARTING)

    async def stop(self, replica: Replica, grace_s: float) -> None:
        self.calls.append(f"stop {replica.replica_id}")

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return [replica_spec.replica_id]

    async def close(self) -> None:
        self.calls.append("close")


def test_host_runtime_sends_image_replicas_to_the_engine_and_the_rest_to_processes() -> None:
    processes, containers = _Recorder(), _Recorder()
    host = HostRuntime(processes, containers)  # type: ignore[arg-type]
    image = replica_spec()
    process = ReplicaSpec(**{**image.__dict__, "replica_id": "p", "image": None})

    async def scenario() -> None:
        started = [await host.start(s, lambda _: None) for s in (image, process)]
        for replica in started:
            await host.stop(replica, 1.0)
        await host.close()

    asyncio.run(scenario())
    assert containers.calls == [f"start {image.replica_id}", f"stop {image.replica_id}", "close"]
    assert processes.calls == ["start p", "stop p", "close"]
    assert host.log_tail(process, 1) == ["p"] and not host.requires_command


def test_exec_goes_to_the_serving_container_or_the_named_sidecar(tmp_path: Path) -> None:
    """`kubectl exec` (tidal.controller.kubeapi.pod_exec) through the engine: interactive, with
    a terminal when asked; the sidecar by its container's name."""
    puller = ContainerSpec("puller", ImageSpec("localhost/puller:1"), {})
    spec = dataclasses.replace(replica_spec(), sidecars=(puller,))
    runtime = ContainerRuntime(tmp_path)
    runtime.engine = PODMAN  # as prepare() finds it
    replica = Replica(spec)
    serving = runtime.exec_command(replica, "user-container", ("sh",), tty=True)
    assert serving.argv == (
        "/usr/bin/podman",
        "exec",
        "--interactive",
        "--tty",
        f"tidal-default-{spec.replica_id}",
        "sh",
    )
    assert serving.env is None and serving.cwd is None  # the container's own
    sidecar = runtime.exec_command(replica, "puller", ("ls", "/models"))
    assert sidecar.argv[2:] == (
        "--interactive",
        f"tidal-default-{spec.replica_id}-puller",
        "ls",
        "/models",
    )


RLIMIT_ERROR = (
    "Error: runc: runc create failed: unable to start container process: error during container "
    "init: error setting rlimits for ready process: error setting rlimit type 7: operation not "
    "permitted: OCI permission denied"
)


def test_an_engine_that_cannot_start_containers_fails_replicas_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A podman that fails as it does on a host that needs containers.conf changes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "podman"
    fake.write_text(f"#!/bin/sh\necho '{RLIMIT_ERROR}' >&2\nexit 126\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    runtime = ContainerRuntime(tmp_path / "data", "auto")
    states: list[ReplicaState] = []

    async def scenario() -> Replica:
        line = await runtime.prepare()  # the check failed at once: said before any start
        assert line.startswith("containers: cannot run images: podman cannot start containers")
        spec = replica_spec(log_path=tmp_path / "logs" / "r.log")
        replica = await runtime.start(spec, lambda r: states.append(r.state))
        async with asyncio.timeout(10):
            while replica.state is ReplicaState.STARTING:
                await asyncio.sleep(0.01)
        await runtime.close()
        return replica

    replica = asyncio.run(scenario())
    assert states[-1] is ReplicaState.FAILED
    assert replica.reason.startswith("podman cannot start containers on this host: Error: runc")
    assert "/etc/containers/containers.conf" in replica.reason
    assert "default_ulimits = []" in replica.reason


def test_up_says_when_docker_has_no_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A docker client without its daemon is named as unusable on `tidal up`'s line, not as the
    engine, and the reason is not logged a second time."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    daemon = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = version ] && echo '{daemon}' >&2 && exit 1\nexit 0\n")
    fake.chmod(0o755)
    for tool in ("sh", "tail", "xargs"):  # what the reaper runs; a host's own podman stays out
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    monkeypatch.setenv("PATH", str(bin_dir))
    runtime = ContainerRuntime(tmp_path / "data", "auto")

    async def scenario() -> tuple[str, str | None]:
        line = await runtime.prepare()
        problem = await runtime.ready()
        await runtime.close()
        return line, problem

    line, problem = asyncio.run(scenario())
    assert line == f"containers: cannot run images: docker cannot start containers: {daemon} " + (
        "(start the docker daemon, or install podman: `apt-get install podman runc`)"
    )
    assert problem is not None and daemon in problem
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
