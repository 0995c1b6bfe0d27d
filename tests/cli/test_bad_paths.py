"""Where a command would write, or whom it would call, is checked before it runs: a path that
cannot be written or a server that is no URL is an error naming the option, not a traceback
(after minutes of work, for a report). So are a negative log tail and a traffic split that
cannot be one, and `tidal up` names the data dir or state file it cannot use."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tidal.cli.main import main

SERVICE = Path(__file__).parents[2] / "examples" / "simulate" / "service.yaml"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--server", "http://127.0.0.1:9", *args])
    return result.exit_code, result.output


def test_a_plot_into_a_missing_directory_is_refused_before_asking_the_platform(tmp_path: Path):
    # port 9 (discard) has no platform: the refusal comes before any call
    code, out = run("forecast", "hello", "--plot", str(tmp_path / "no" / "plan.png"))
    assert code == 2 and "--plot" in out and "does not exist" in out


def test_a_report_directory_that_cannot_be_made_is_refused_before_the_replay(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out = run(
        "simulate", "--trace", "synthetic", "-f", str(SERVICE), "--report", str(blocker / "x")
    )
    assert code == 2 and "--report" in out and "cannot create directory" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("server", ["notaurl", "http://", "ftp://host", "127.0.0.1:8081"])
def test_a_server_that_is_no_url_is_refused(server: str):
    result = CliRunner().invoke(main, ["--server", server, "get", "services"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--server" in result.output and "is not an http(s) URL with a host" in result.output


@pytest.mark.parametrize("split", ["hello-00001=-10", "hello-00001=150", "latest=50.5"])
def test_a_traffic_percent_outside_0_to_100_is_refused(split: str):
    code, out = run("traffic", "hello", "--to", split)
    assert code == 2 and f"{split!r}: PERCENT must be a whole number from 0 to 100" in out


def test_a_revision_tagged_twice_is_refused_not_half_applied():
    code, out = run("traffic", "hello", "--to", "latest=100", "--tag", "a=x", "--tag", "a=y")
    assert code == 2 and "'a' is tagged twice" in out


def test_a_negative_log_tail_is_refused(tmp_path: Path):
    code, out = run("logs", "hello", "--tail", "-5")
    assert code == 2 and "--tail" in out


def up(data_dir: Path, kube_port: int = 0) -> subprocess.CompletedProcess[str]:
    ports = ["--port", "0", "--admin-port", "0", "--kube-port", str(kube_port)]
    return subprocess.run(
        [sys.executable, "-m", "tidal", "up", "--data-dir", str(data_dir), *ports],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_names_a_data_dir_it_cannot_make(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = up(blocker / "state")
    assert result.returncode == 1
    assert f"{blocker / 'state'}: Not a directory" in result.stderr
    assert "another tidal" not in result.stderr


def test_up_names_a_damaged_state_file_and_keeps_it(tmp_path: Path):
    state = tmp_path / "tidal.db"
    state.write_bytes(b"\x00garbage" * 500)
    result = up(tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{state} is not a tidal state file or is damaged" in result.stderr
    assert state.read_bytes() == b"\x00garbage" * 500


def test_up_names_the_port_another_program_holds(tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = up(tmp_path / "data", kube_port=port)
    assert result.returncode == 1
    assert f"try another --kube-port than {port}" in result.stderr
