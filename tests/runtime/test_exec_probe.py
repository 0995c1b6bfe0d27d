"""exec_failure: how one exec probe's command is run and judged."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from tidal.runtime.exec_probe import OUTPUT_KEPT, exec_failure


async def test_exit_zero_passes() -> None:
    assert await exec_failure(["true"], ["true"], 5) is None


async def test_a_failure_says_the_code_and_the_last_line_printed() -> None:
    code = "import sys; print('loading'); print('model not loaded', file=sys.stderr); sys.exit(3)"
    why = await exec_failure([sys.executable, "-c", code], ["check", "--model"], 5)
    assert why == "exec check --model exited with code 3: model not loaded"


async def test_a_command_that_cannot_start_says_why() -> None:
    why = await exec_failure(["/no/such/probe"], ["/no/such/probe"], 5)
    assert why == "exec /no/such/probe: No such file or directory"


async def test_a_timeout_kills_the_command_and_what_it_started(tmp_path: Path) -> None:
    """The command runs in a session of its own; on timeout the whole group is killed, so a
    child it left behind cannot write its mark."""
    mark = tmp_path / "mark"
    code = (
        "import subprocess, sys; "
        f"subprocess.Popen(['sh', '-c', 'sleep 1.5; touch {mark}']); "
        "import time; time.sleep(30)"
    )
    started = time.monotonic()
    why = await exec_failure([sys.executable, "-c", code], ["slow"], 0.5)
    assert why == "exec slow: no exit within 0.5s"
    assert time.monotonic() - started < 5
    time.sleep(1.5)
    assert not mark.exists()


async def test_endless_output_is_cut_to_its_tail() -> None:
    code = "import sys; sys.stdout.write('x' * 5_000_000 + '\\nlast words\\n'); sys.exit(1)"
    why = await exec_failure([sys.executable, "-c", code], ["noisy"], 10)
    assert why == "exec noisy exited with code 1: last words"
    assert OUTPUT_KEPT < 5_000_000


async def test_a_cancelled_probe_leaves_no_process(tmp_path: Path) -> None:
    """A replica that stops cancels its probes: the command is killed with them."""
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    probe = asyncio.ensure_future(exec_failure([sys.executable, "-c", code], ["slow"], 30))
    while not pid_file.exists() or not pid_file.read_text():
        await asyncio.sleep(0.01)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists()
