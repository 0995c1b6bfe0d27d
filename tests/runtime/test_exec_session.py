"""ExecSession (tidal.runtime.exec_session) against real processes: pipes and a terminal,
input and its end, the terminal's size, exit codes, and a kill that takes the whole group."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tidal.runtime.base import ExecCommand
from tidal.runtime.exec_session import STDERR, STDOUT, ExecSession


async def collect(session: ExecSession) -> list[tuple[int, bytes]]:
    chunks = []
    while (chunk := await session.next_output()) is not None:
        chunks.append(chunk)
    return chunks


def joined(chunks: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(data for number, data in chunks if number == stream)


async def test_pipes_keep_stdout_and_stderr_apart_and_give_the_exit_code() -> None:
    command = ExecCommand(("sh", "-c", "cat; echo done; echo oops >&2; exit 3"))
    session = await ExecSession.start(command, stdin=True, tty=False)
    session.write(b"model.bin\n")
    session.close_stdin()
    chunks = await asyncio.wait_for(collect(session), 10)
    assert joined(chunks, STDOUT) == b"model.bin\ndone\n"
    assert joined(chunks, STDERR) == b"oops\n"
    assert await session.wait() == 3
    session.close()


async def test_the_environment_and_folder_are_the_commands(tmp_path) -> None:
    command = ExecCommand(("sh", "-c", "echo $MODEL; pwd"), {"MODEL": "small"}, str(tmp_path))
    session = await ExecSession.start(command, stdin=False, tty=False)
    chunks = await asyncio.wait_for(collect(session), 10)
    assert joined(chunks, STDOUT) == f"small\n{tmp_path}\n".encode()
    assert await session.wait() == 0


async def test_a_terminal_echoes_input_knows_its_size_and_ends_input_with_eof() -> None:
    command = ExecCommand(("sh", "-c", "read line; echo got $line; stty size; cat; echo end"))
    session = await ExecSession.start(command, stdin=True, tty=True)
    session.resize(120, 40)
    session.write(b"hi\n")
    session.close_stdin()  # ^D: cat sees the end of its input
    output = joined(await asyncio.wait_for(collect(session), 10), STDOUT)
    assert b"got hi\r\n" in output and b"40 120\r\n" in output and output.endswith(b"end\r\n")
    assert await session.wait() == 0
    session.close()


async def test_a_terminal_is_the_commands_controlling_terminal() -> None:
    """A shell gets job control: the terminal is the controlling one of the command's session
    (set in preexec_fn, which uvloop runs before it sets up the child's stdio)."""
    code = "import os; print(os.tcgetpgrp(0) == os.getpgrp(), os.getsid(0) == os.getpid())"
    session = await ExecSession.start(ExecCommand((sys.executable, "-c", code)), False, True)
    assert joined(await asyncio.wait_for(collect(session), 10), STDOUT) == b"True True\r\n"
    session.close()


async def test_kill_ends_the_command_and_what_it_started() -> None:
    command = ExecCommand(("sh", "-c", "sleep 60 & echo $!; wait"))
    session = await ExecSession.start(command, stdin=False, tty=False)
    first = await asyncio.wait_for(session.next_output(), 10)
    assert first is not None
    child = int(first[1])
    session.kill()
    assert await asyncio.wait_for(session.wait(), 10) == 128 + 9  # SIGKILL, as a shell says it
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"the command's child {child} outlived the kill")
    session.close()


async def test_a_command_that_does_not_exist_cannot_start() -> None:
    with pytest.raises(FileNotFoundError):
        await ExecSession.start(ExecCommand(("no-such-command-here",)), False, False)
