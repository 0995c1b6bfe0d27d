"""LocalRuntime against real processes: the hello example and small inline scripts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import NOT_FOR_OTHERS, others_can_read
from tidal.api.config import LogLimits
from tidal.runtime.base import ProbeSpec, Replica, ReplicaSpec, ReplicaState, SecurityContext
from tidal.runtime.hygiene import ReplicaRecords, group_members
from tidal.runtime.local import LocalRuntime, credentials, replica_env, resolve_command
from tidal.runtime.logs import RotatingLog, tail_lines

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"
MODEL = REPO / "examples" / "model"
S = ReplicaState
DEFAULT_PROBE = ProbeSpec()  # aggressive TCP, as Knative defaults it


class Recorder:
    """An on_change listener that keeps every state it was told about."""

    def __init__(self) -> None:
        self.states: list[ReplicaState] = []

    def __call__(self, replica: Replica) -> None:
        self.states.append(replica.state)

    async def wait(self, replica: Replica, *states: ReplicaState, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while replica.state not in states:
            assert time.monotonic() < deadline, f"still {replica.state}: {replica.reason}"
            await asyncio.sleep(0.005)


def make_spec(
    tmp_path: Path,
    command: tuple[str, ...] | list[str],
    *,
    probe: ProbeSpec = DEFAULT_PROBE,
    env: dict[str, str] | None = None,
    working_dir: str | Path | None = None,
    replica_id: str = "hello-00001-a",
) -> ReplicaSpec:
    return ReplicaSpec(
        replica_id=replica_id,
        namespace="default",
        service="hello",
        revision="hello-00001",
        command=tuple(command),
        env=env or {},
        working_dir=None if working_dir is None else str(working_dir),
        probe=probe,
        log_path=tmp_path / "logs" / f"{replica_id}.log",
    )


def hello_spec(tmp_path: Path, probe: ProbeSpec = DEFAULT_PROBE) -> ReplicaSpec:
    env = {"K_SERVICE": "hello", "K_CONFIGURATION": "hello", "K_REVISION": "hello-00001"}
    return make_spec(tmp_path, ("python", "app.py"), probe=probe, env=env, working_dir=HELLO)


def script(code: str) -> tuple[str, ...]:
    return ("python", "-c", code)


def get(replica: Replica, path: str) -> str:
    url = f"http://{replica.host}:{replica.port}{path}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def pid_gone(pid: int) -> bool:
    """True once `pid` has exited: gone, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pid_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
async def runtime():
    rt = LocalRuntime(close_grace_s=1.0)
    yield rt
    await rt.close()


async def test_hello_becomes_ready_and_serves(runtime: LocalRuntime, tmp_path: Path) -> None:
    rec = Recorder()
    replica = await runtime.start(hello_spec(tmp_path), rec)
    assert replica.state is S.STARTING and replica.pid and replica.port
    await rec.wait(replica, S.READY)
    assert rec.states == [S.STARTING, S.READY]
    assert replica.ever_ready and replica.startup_seconds is not None
    assert 0 < replica.startup_seconds < 5

    assert await asyncio.to_thread(get, replica, "/") == "Hello from hello-00001!\n"
    env = json.loads(await asyncio.to_thread(get, replica, "/env"))
    assert env["PORT"] == str(replica.port)
    assert (env["K_SERVICE"], env["K_REVISION"]) == ("hello", "hello-00001")
    assert "listening on" in runtime.log_tail(replica.spec, 10)[-1]
    stream = await asyncio.to_thread(get, replica, "/stream?chunks=3&delay=1")
    assert stream.splitlines() == [f"chunk {i} from hello-00001" for i in range(3)]


async def test_command_references_expand_with_the_replica_environment(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """A Knative manifest writes `args: ["--port=$(PORT)"]`: the replica's own port."""
    rec = Recorder()
    command = ("python", "-m", "http.server", "--bind", "127.0.0.1", "$(PORT)")
    replica = await runtime.start(make_spec(tmp_path, command), rec)
    await rec.wait(replica, S.READY)
    assert f"port {replica.port}" in "".join(runtime.log_tail(replica.spec, 5))


async def test_model_example_predicts(runtime: LocalRuntime, tmp_path: Path) -> None:
    env = {"MODEL_LOAD_DELAY": "0", "MODEL_PATH": str(tmp_path / "model.npz")}
    probe = ProbeSpec(kind="http", path="/healthz")
    spec = make_spec(tmp_path, ("python", "app.py"), probe=probe, env=env, working_dir=MODEL)
    rec = Recorder()
    replica = await runtime.start(spec, rec)
    await rec.wait(replica, S.READY)
    assert json.loads(await asyncio.to_thread(get, replica, "/"))["accuracy"] > 0.8

    def post(body: bytes) -> tuple[int, dict]:
        url = f"http://{replica.host}:{replica.port}/v1/predict"
        try:
            with urllib.request.urlopen(url, data=body, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, answer = await asyncio.to_thread(post, b'{"instances": [[0, 1, 2, 3], [3, 2, 1, 0]]}')
    assert status == 200 and len(answer["predictions"]) == 2
    assert all(p in (0, 1, 2) for p in answer["predictions"])
    status, answer = await asyncio.to_thread(post, b'{"instances": [[0, 1]]}')
    assert status == 400 and "shape [1, 2]" in answer["error"]
    assert (await asyncio.to_thread(post, b"{nope"))[0] == 400


@pytest.mark.parametrize(("path", "ready"), [("/env", True), ("/missing", False)])
async def test_http_probe_needs_a_2xx(
    runtime: LocalRuntime, tmp_path: Path, path: str, ready: bool
) -> None:
    rec = Recorder()
    replica = await runtime.start(hello_spec(tmp_path, ProbeSpec(kind="http", path=path)), rec)
    if ready:
        await rec.wait(replica, S.READY)
    else:
        await asyncio.sleep(0.6)  # long after hello listens; its 404s never count
        assert replica.state is S.STARTING


async def test_exit_on_its_own_fails_with_the_code(runtime: LocalRuntime, tmp_path: Path) -> None:
    rec = Recorder()
    spec = make_spec(tmp_path, script("import sys; print('boom'); sys.exit(3)"))
    replica = await runtime.start(spec, rec)
    await rec.wait(replica, S.FAILED)
    assert rec.states == [S.STARTING, S.FAILED]
    assert (replica.exit_code, replica.reason) == (3, "exited with code 3")
    assert runtime.log_tail(spec, 5) == ["boom"]


async def test_command_not_found_fails_without_raising(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    rec = Recorder()
    replica = await runtime.start(make_spec(tmp_path, ("no-such-command-xyz", "--serve")), rec)
    assert replica.state is S.FAILED and rec.states == [S.FAILED]
    assert replica.pid is None
    assert "no-such-command-xyz" in replica.reason
    assert "No such file or directory" in replica.reason


async def test_missing_working_dir_is_named(runtime: LocalRuntime, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, ("python", "app.py"), working_dir=tmp_path / "nope")
    replica = await runtime.start(spec, Recorder())
    assert replica.state is S.FAILED
    assert "working directory" in replica.reason and "nope" in replica.reason


async def test_app_that_never_listens_stays_starting(runtime: LocalRuntime, tmp_path: Path) -> None:
    rec = Recorder()
    replica = await runtime.start(make_spec(tmp_path, script("import time; time.sleep(60)")), rec)
    await asyncio.sleep(0.5)
    assert replica.state is S.STARTING and rec.states == [S.STARTING]
    await runtime.stop(replica, grace_s=2)
    assert replica.state is S.STOPPED and rec.states == [S.STARTING, S.STOPPED]


async def test_stop_sends_sigterm(runtime: LocalRuntime, tmp_path: Path) -> None:
    rec = Recorder()
    replica = await runtime.start(hello_spec(tmp_path), rec)
    await rec.wait(replica, S.READY)
    t0 = time.monotonic()
    await runtime.stop(replica, grace_s=5)
    assert time.monotonic() - t0 < 2  # hello exits on SIGTERM, well before the grace
    assert replica.state is S.STOPPED and replica.exit_code == 0
    assert rec.states == [S.STARTING, S.READY, S.STOPPED]
    assert runtime.log_tail(replica.spec, 1) == ["hello: stopped"]
    assert pid_gone(replica.pid)


async def test_sigterm_ignored_means_sigkill_after_grace(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('armed'); "
    code += "time.sleep(60)"
    rec = Recorder()
    replica = await runtime.start(make_spec(tmp_path, script(code)), rec)
    while runtime.log_tail(replica.spec, 1) != ["armed"]:
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    await runtime.stop(replica, grace_s=0.3)
    assert 0.3 <= time.monotonic() - t0 < 2
    assert replica.state is S.STOPPED and replica.exit_code == -signal.SIGKILL


async def test_stop_is_idempotent(runtime: LocalRuntime, tmp_path: Path) -> None:
    rec = Recorder()
    replica = await runtime.start(hello_spec(tmp_path), rec)
    await asyncio.gather(runtime.stop(replica, 5), runtime.stop(replica, 5))
    await runtime.stop(replica, 5)
    assert rec.states.count(S.STOPPED) == 1


async def test_stop_kills_the_whole_process_group(runtime: LocalRuntime, tmp_path: Path) -> None:
    code = "import subprocess, time; p = subprocess.Popen(['sleep', '60']); print(p.pid); "
    code += "time.sleep(60)"
    replica = await runtime.start(make_spec(tmp_path, script(code)), Recorder())
    while not runtime.log_tail(replica.spec, 1):
        await asyncio.sleep(0.01)
    worker = int(runtime.log_tail(replica.spec, 1)[0])
    await runtime.stop(replica, grace_s=2)
    assert await asyncio.to_thread(wait_gone, worker)


async def test_close_stops_everything(tmp_path: Path) -> None:
    runtime = LocalRuntime(close_grace_s=2)
    replicas = [
        await runtime.start(
            make_spec(tmp_path, script("import time; time.sleep(60)"), replica_id=f"r{i}"),
            Recorder(),
        )
        for i in range(3)
    ]
    await runtime.close()
    assert all(r.state is S.STOPPED and pid_gone(r.pid) for r in replicas)


async def test_periodic_probe_failures_make_it_not_ready(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    flag = tmp_path / "unhealthy"
    app = f"""
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if os.path.exists({str(flag)!r}) else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
    probe = ProbeSpec(kind="http", path="/health", period_s=0.05, timeout_s=1, failure_threshold=2)
    rec = Recorder()
    replica = await runtime.start(make_spec(tmp_path, script(app), probe=probe), rec)
    await rec.wait(replica, S.READY)
    first_ready_at = replica.ready_at
    flag.touch()
    await rec.wait(replica, S.NOT_READY)
    flag.unlink()
    await rec.wait(replica, S.READY)
    assert rec.states == [S.STARTING, S.READY, S.NOT_READY, S.READY]
    assert replica.ready_at == first_ready_at  # start-up time is measured to the first readiness


async def test_failed_liveness_probe_kills_the_replica_with_why(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """examples/hello's /healthz turns 503 after UNHEALTHY_AFTER seconds; two failed probes in
    a row take the replica out of routing, then SIGTERM end it, reported FAILED with why."""
    liveness = ProbeSpec(kind="http", path="/healthz", period_s=0.1, failure_threshold=2)
    spec = hello_spec(tmp_path)
    spec = ReplicaSpec(
        **{**vars(spec), "liveness": liveness, "env": {**spec.env, "UNHEALTHY_AFTER": "1"}}
    )
    rec = Recorder()
    replica = await runtime.start(spec, rec)
    await rec.wait(replica, S.READY)
    await rec.wait(replica, S.FAILED, timeout=10)
    assert rec.states == [S.STARTING, S.READY, S.NOT_READY, S.FAILED]
    assert replica.reason == (
        "killed after its liveness probe failed 2 times in a row (HTTP 503 from /healthz)"
    )
    assert replica.exit_code == 0  # hello exits cleanly on SIGTERM: no SIGKILL was needed


async def test_a_passing_liveness_probe_leaves_the_replica_alone(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """Nor does a probe that fails while the app is still starting count."""
    liveness = ProbeSpec(kind="tcp", period_s=0.05, failure_threshold=1)
    spec = ReplicaSpec(**{**vars(hello_spec(tmp_path)), "liveness": liveness})
    rec = Recorder()
    replica = await runtime.start(spec, rec)
    await rec.wait(replica, S.READY)
    await asyncio.sleep(0.5)  # ten probes
    assert rec.states == [S.STARTING, S.READY]
    await runtime.stop(replica, 5)
    assert rec.states == [S.STARTING, S.READY, S.STOPPED]


async def test_an_exec_readiness_probe_needs_the_command_and_the_port(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """As in Knative: the command (run in the replica's folder, with its environment) must exit
    0 and the port must take a connection, so a file written before the server listens does
    not route requests to a closed port."""
    ready_file = tmp_path / "loaded"
    app = f"""
import os, socket, time
open({str(ready_file)!r}, "w").close()
time.sleep(1.5)
s = socket.socket(); s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen(); time.sleep(60)
"""
    check = ("python", "-c", "import os, sys; sys.exit(0 if os.environ['PORT'] else 1)")
    probe = ProbeSpec(kind="exec", command=("test", "-f", "loaded"), period_s=0)
    spec = make_spec(tmp_path, script(app), probe=probe, working_dir=tmp_path)
    spec = ReplicaSpec(**{**vars(spec), "liveness": ProbeSpec(kind="exec", command=check)})
    rec = Recorder()
    started = time.monotonic()
    replica = await runtime.start(spec, rec)
    await rec.wait(replica, S.READY, timeout=10)
    assert time.monotonic() - started >= 1.5  # the file came first; the port counts too
    assert ready_file.exists()


async def test_an_exec_readiness_probe_waits_for_the_command(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    flag = tmp_path / "ready"
    probe = ProbeSpec(kind="exec", command=("test", "-f", str(flag)), period_s=0)
    rec = Recorder()
    replica = await runtime.start(hello_spec(tmp_path, probe), rec)
    await asyncio.sleep(1.5)
    assert rec.states == [S.STARTING]  # listening, but the command fails
    flag.touch()
    await rec.wait(replica, S.READY, timeout=3)


async def test_a_failed_startup_probe_kills_the_replica_with_why(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """Readiness waits for the startup probe, which never passes: after failureThreshold
    attempts the replica is terminated and reported FAILED with the command's own words."""
    startup = ProbeSpec(kind="exec", command=("ls", "model.bin"), period_s=0.1, failure_threshold=3)
    spec = ReplicaSpec(**{**vars(hello_spec(tmp_path)), "startup": startup})
    rec = Recorder()
    replica = await runtime.start(spec, rec)
    await rec.wait(replica, S.FAILED, timeout=10)
    assert rec.states == [S.STARTING, S.FAILED]  # never ready, although it listened
    assert replica.reason.startswith(
        "killed after its startup probe failed 3 times in a row (exec ls model.bin exited "
        "with code 2: ls: cannot access 'model.bin'"
    )


async def test_liveness_waits_for_the_startup_probe(runtime: LocalRuntime, tmp_path: Path) -> None:
    """A liveness probe that fails from the start does nothing while the startup probe has not
    passed (a model still loading); once it has, the kubelet's rule applies and it kills."""
    loaded = tmp_path / "loaded"
    startup = ProbeSpec(
        kind="exec", command=("test", "-f", str(loaded)), period_s=0.05, failure_threshold=1000
    )
    liveness = ProbeSpec(kind="tcp", path="", period_s=0.05, failure_threshold=1)
    app = "import time; time.sleep(60)"  # never listens: liveness always fails
    spec = make_spec(tmp_path, script(app))
    spec = ReplicaSpec(**{**vars(spec), "startup": startup, "liveness": liveness})
    rec = Recorder()
    replica = await runtime.start(spec, rec)
    await asyncio.sleep(1.0)  # twenty liveness periods
    assert rec.states == [S.STARTING]
    loaded.touch()
    await rec.wait(replica, S.FAILED, timeout=5)
    assert replica.reason == (
        "killed after its liveness probe failed 1 times in a row (connection refused)"
    )


def test_log_tail_reads_the_end(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)) + "partial")
    assert tail_lines(log, 3) == ["line 998", "line 999", "partial"]
    assert tail_lines(log, 3, block=7) == ["line 998", "line 999", "partial"]
    assert tail_lines(log, 2000) == [f"line {i}" for i in range(1000)] + ["partial"]
    assert tail_lines(log, 0) == []
    assert tail_lines(tmp_path / "missing.log", 5) == []


def test_replica_env_is_explicit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SECRET_OF_THE_PLATFORM", "x")
    monkeypatch.setenv("PATH", "/usr/bin")
    spec = make_spec(tmp_path, ("python",), env={"PORT": "1", "A": "b"})
    spec = ReplicaSpec(**{**vars(spec), "devices": ("0", "2")})
    env = replica_env(spec, 4321)
    assert "SECRET_OF_THE_PLATFORM" not in env
    assert (env["PATH"], env["A"], env["PORT"]) == ("/usr/bin", "b", "4321")
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "0,2"
    assert resolve_command(("python3", "x.py")) == [sys.executable, "x.py"]
    assert resolve_command(("python3.11", "x.py")) == ["python3.11", "x.py"]


# A platform process of its own, so that the test can kill it with SIGKILL.
PLATFORM = """
import asyncio, json, sys, time
from pathlib import Path
from tidal.runtime.base import ProbeSpec, ReplicaSpec
from tidal.runtime.local import LocalRuntime

mode, loop, folder = sys.argv[1:]

def spec(name, command, cwd=None):
    return ReplicaSpec(name, "default", "hello", "hello-00001", command, {}, cwd, ProbeSpec(),
                       Path(folder) / f"{name}.log")

async def main():
    rt = LocalRuntime()
    if mode == "orphan":
        replica = await rt.start(spec("orphan", ("python", "-c", "import time; time.sleep(60)")),
                                 lambda r: None)
        print(replica.pid, flush=True)
        await asyncio.sleep(60)
    replica = await rt.start(spec("hello", ("python", "app.py"), sys.argv[0]), lambda r: None)
    while replica.state != "Ready":
        await asyncio.sleep(0.005)
    await rt.stop(replica, 5)
    missing = await rt.start(spec("missing", ("no-such-command-xyz",)), lambda r: None)
    print(json.dumps([replica.state, replica.exit_code, missing.state, missing.reason]))

if loop == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def run_platform(mode: str, loop: str, tmp_path: Path) -> subprocess.Popen[str]:
    # argv[0] of `python -c` is "-c"; the hello app is found through the working directory.
    cmd = [sys.executable, "-c", PLATFORM.replace("sys.argv[0]", repr(str(HELLO))), mode, loop]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([*cmd, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_replica_dies_with_the_platform(loop: str, tmp_path: Path) -> None:
    platform = run_platform("orphan", loop, tmp_path)
    assert platform.stdout is not None
    replica_pid = int(platform.stdout.readline())
    assert not pid_gone(replica_pid)
    platform.kill()
    platform.wait()
    assert wait_gone(replica_pid), "replica outlived its platform"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_lifecycle_under_each_event_loop(loop: str, tmp_path: Path) -> None:
    platform = run_platform("lifecycle", loop, tmp_path)
    out, _ = platform.communicate(timeout=20)
    state, exit_code, missing_state, reason = json.loads(out)
    assert (state, exit_code, missing_state) == ("Stopped", 0, "Failed")
    assert "no-such-command-xyz" in reason and "No such file or directory" in reason


# -- log rotation -------------------------------------------------------------------------------


def test_rotating_log_keeps_its_cap_and_tail_reads_across_files(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    lines = [f"line {i:05d} " + "x" * 40 for i in range(2000)]  # ~100 KB
    with RotatingLog(path, max_bytes=8192, max_files=3) as out:
        for i in range(0, len(lines), 7):  # writes that do not end on line ends
            out.write("".join(f"{line}\n" for line in lines[i : i + 7]).encode())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.log", "r.log.1", "r.log.2"]
    assert all((tmp_path / f).stat().st_size <= 8192 for f in files)
    assert (tmp_path / "r.log").stat().st_mode & 0o777 == 0o600
    kept = sum((tmp_path / f).stat().st_size for f in files) // 53  # bytes per line
    tail = tail_lines(path, kept - 2)  # more than the live file holds: read across rotations
    assert tail == lines[-(kept - 2) :]
    assert tail_lines(path, 10**6)[-1] == lines[-1]


def test_rotating_log_with_one_file_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    with RotatingLog(path, max_bytes=4096, max_files=1) as out:
        for i in range(1000):
            out.write(f"{i}\n".encode())
    assert [p.name for p in tmp_path.iterdir()] == ["r.log"]
    assert path.stat().st_size <= 4096
    assert tail_lines(path, 1) == ["999"]


async def test_replica_output_is_rotated(tmp_path: Path) -> None:
    runtime = LocalRuntime(close_grace_s=1, log_limits=LogLimits(max_bytes=4096, max_files=2))
    code = "import sys\nfor i in range(5000): print('out', i)\nsys.exit(3)"
    rec = Recorder()
    replica = await runtime.start(make_spec(tmp_path, script(code)), rec)
    await rec.wait(replica, S.FAILED, timeout=10)
    log_dir = replica.spec.log_path.parent
    assert sorted(p.name for p in log_dir.iterdir()) == ["hello-00001-a.log", "hello-00001-a.log.1"]
    assert all(p.stat().st_size <= 4096 for p in log_dir.iterdir())
    assert runtime.log_tail(replica.spec, 3) == ["out 4997", "out 4998", "out 4999"]
    await runtime.close()


async def test_only_the_most_recent_stopped_replicas_keep_their_logs(tmp_path: Path) -> None:
    """A service that scales to zero and back all day must not fill the disk with old logs."""
    runtime = LocalRuntime(close_grace_s=1, log_limits=LogLimits(max_stopped=2))
    sleeper = await runtime.start(make_spec(tmp_path, SLEEPER, replica_id="r-live"), Recorder())
    for n in range(4):
        rec = Recorder()
        code = f"print('run {n}')"
        replica = await runtime.start(make_spec(tmp_path, script(code), replica_id=f"r-{n}"), rec)
        await rec.wait(replica, S.FAILED, timeout=10)
        time.sleep(0.01)  # distinct modification times
    assert runtime.log_tail(replica.spec, 1) == ["run 3"], "the one that just failed stays"
    names = sorted(p.name for p in (tmp_path / "logs").iterdir())
    # before r-3 started, r-0 and r-1 were older than the 2 kept; the running one stays
    assert names == ["r-1.log", "r-2.log", "r-3.log", "r-live.log"]
    await runtime.stop(sleeper, 1)
    await runtime.start(make_spec(tmp_path, SLEEPER, replica_id="r-next"), Recorder())
    names = sorted(p.name for p in (tmp_path / "logs").iterdir() if p.name != "r-next.log")
    assert names == ["r-3.log", "r-live.log"], "the sleeper stopped last: its log is kept"
    await runtime.close()


# -- securityContext ------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


SLEEPER = script("import time; time.sleep(60)")


def secured(tmp_path: Path, **fields: object) -> ReplicaSpec:
    """A sleeper (/bin/sleep: tidal's interpreter may not be readable by another user)."""
    spec = make_spec(tmp_path, ("/bin/sleep", "60"))
    return ReplicaSpec(**{**vars(spec), "security": SecurityContext(**fields)})


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_run_as_user_and_group(runtime: LocalRuntime, tmp_path: Path) -> None:
    replica = await runtime.start(
        secured(tmp_path, run_as_user=65534, run_as_group=65533, allow_privilege_escalation=False),
        Recorder(),
    )
    assert replica.state is S.STARTING, replica.reason
    status = proc_status(replica.pid)
    assert status["Uid"].split() == ["65534"] * 4
    assert status["Gid"].split() == ["65533"] * 4
    assert status["Groups"] == ""  # root's supplementary groups are dropped
    assert status["NoNewPrivs"] == "1"


async def test_run_as_non_root_refuses_root(runtime: LocalRuntime, tmp_path: Path) -> None:
    as_root = {} if os.geteuid() == 0 else {"run_as_user": 0}
    replica = await runtime.start(secured(tmp_path, run_as_non_root=True, **as_root), Recorder())
    assert replica.state is S.FAILED
    assert "runAsNonRoot" in replica.reason and "root" in replica.reason
    assert replica.pid is None  # nothing was started


@pytest.mark.skipif(os.geteuid() == 0, reason="root may switch users")
async def test_run_as_another_user_without_root_is_refused(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    replica = await runtime.start(secured(tmp_path, run_as_user=os.geteuid() + 1), Recorder())
    assert replica.state is S.FAILED and "only root can switch users" in replica.reason


async def test_secrets_of_the_platform_do_not_reach_replicas(
    runtime: LocalRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDAL_TOKEN", "s3cret")
    code = "import json, os, time; print(json.dumps(sorted(os.environ))); time.sleep(60)"
    replica = await runtime.start(make_spec(tmp_path, script(code), env={"A": "b"}), Recorder())
    while not runtime.log_tail(replica.spec, 1):
        await asyncio.sleep(0.01)
    names = json.loads(runtime.log_tail(replica.spec, 1)[0])
    assert "TIDAL_TOKEN" not in names and "A" in names
    assert b"s3cret" not in Path(f"/proc/{replica.pid}/environ").read_bytes()


# -- process hygiene ----------------------------------------------------------------------------

READ_ENVIRON = "import sys; print(len(open(f'/proc/{sys.argv[1]}/environ', 'rb').read()))"
HOLDER = (
    "import sys, time; from tidal.runtime.hygiene import make_non_dumpable; "
    "print(make_non_dumpable() if sys.argv[1] == '1' else 'dumpable', flush=True); time.sleep(30)"
)


@pytest.mark.parametrize("non_dumpable", [True, False])
def test_non_dumpable_process_hides_its_environment(non_dumpable: bool) -> None:
    """A process of the same user (as a replica is) cannot read a non-dumpable one's environ.
    As root both run as nobody, since root may read anything."""
    user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    python = sys.executable
    if user:  # tidal's own interpreter may sit where nobody cannot read
        python = "/usr/bin/python3"
        if not os.path.exists(python):
            pytest.skip("no /usr/bin/python3 to run as nobody")
        if not others_can_read(REPO / "tidal" / "runtime" / "hygiene.py"):
            pytest.skip(NOT_FOR_OTHERS)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDAL_TOKEN": "s3cret"}
    holder = subprocess.Popen(
        [python, "-c", HOLDER, "1" if non_dumpable else "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **user,  # type: ignore[arg-type]
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == ("True" if non_dumpable else "dumpable")
        reader = subprocess.run(
            [python, "-c", READ_ENVIRON, str(holder.pid)],
            capture_output=True,
            text=True,
            **user,  # type: ignore[arg-type]
        )
        if non_dumpable:
            assert reader.returncode != 0 and "Permission denied" in reader.stderr
        else:
            assert reader.returncode == 0 and int(reader.stdout) > 0
    finally:
        holder.kill()
        holder.wait()


def group_alive(pgid: int) -> list[int]:
    return group_members(pgid, 0)


def test_reap_kills_a_recorded_group_left_by_a_crash(tmp_path: Path) -> None:
    """What a crashed platform leaves: the group leader killed by the death signal, a worker it
    forked still running. The next start kills the worker from the record."""
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; exec sleep 61"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert leader.stdout is not None
    worker = int(leader.stdout.readline())
    records = ReplicaRecords(tmp_path / "run")
    records.record("hello-00001-abc", leader.pid)
    leader.kill()
    leader.wait()
    assert not pid_gone(worker) and group_alive(leader.pid) == [worker]
    killed = ReplicaRecords(tmp_path / "run").reap()
    assert len(killed) == 1 and str(worker) in killed[0]
    assert wait_gone(worker)
    assert list((tmp_path / "run").iterdir()) == []


def test_reap_spares_a_group_whose_number_was_reused(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        records = ReplicaRecords(tmp_path / "run")
        records.record("hello-00001-abc", other.pid)
        record = tmp_path / "run" / "hello-00001-abc.json"
        entry = json.loads(record.read_text())
        entry["start"] -= 1  # the recorded leader started earlier: this is someone else
        record.write_text(json.dumps(entry))
        assert records.reap() == []
        assert not pid_gone(other.pid)
    finally:
        other.kill()
        other.wait()


async def test_records_follow_the_replicas(tmp_path: Path) -> None:
    runtime = LocalRuntime(close_grace_s=1, records=ReplicaRecords(tmp_path / "run"))
    replica = await runtime.start(make_spec(tmp_path, SLEEPER), Recorder())
    entry = json.loads((tmp_path / "run" / "hello-00001-a.json").read_text())
    assert entry["pgid"] == replica.pid == os.getpgid(replica.pid)
    await runtime.stop(replica, 1)
    assert list((tmp_path / "run").iterdir()) == []


def test_run_as_the_platforms_own_user_needs_no_switch() -> None:
    same = SecurityContext(run_as_user=os.geteuid(), run_as_group=os.getegid())
    assert credentials(same) is None
    assert credentials(SecurityContext()) is None
