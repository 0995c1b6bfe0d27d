"""Running an exec probe's command, as the kubelet does: it passes when the command exits 0
within the probe's timeout (docs/reliability.md#exec-probes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

OUTPUT_KEPT = 4096  # bytes of the command's output kept, for the last line of a failure
REASON_CHARS = 200


async def exec_failure(
    argv: Sequence[str], command: Sequence[str], timeout_s: float, **spawn: Any
) -> str | None:
    """Run `argv` (the manifest's `command`, perhaps wrapped in `podman exec`) in a session of
    its own: None when it exits 0 within `timeout_s`, else why not, with the last line it
    printed. `spawn` goes to create_subprocess_exec (env, cwd, preexec_fn)."""
    shown = shlex.join(command)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # so that a timeout kills what it started too
            **spawn,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"exec {shown}: {getattr(exc, 'strerror', None) or exc}"
    try:
        async with asyncio.timeout(timeout_s):
            output = await _output_tail(process)
            code = await process.wait()
    except TimeoutError:
        return f"exec {shown}: no exit within {timeout_s:g}s"
    finally:  # timed out, or the probe was cancelled (the replica stops): nothing may outlive it
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if code == 0:
        return None
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    said = f": {last.strip()[:REASON_CHARS]}" if last else ""
    return f"exec {shown} exited with code {code}{said}"


async def _output_tail(process: asyncio.subprocess.Process) -> str:
    """Read the command's output to its end, keeping only the last OUTPUT_KEPT bytes: a probe
    that prints without end must not fill the platform's memory."""
    assert process.stdout is not None
    kept = b""
    while chunk := await process.stdout.read(65536):
        kept = (kept + chunk)[-OUTPUT_KEPT:]
    return kept.decode(errors="replace")
