"""ExecSession (tidal.runtime.exec_session) against real processes: pipes and a terminal,
input and its end, the terminal's size, exit codes, and a kill that takes the whole group."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tidal.runtime.base import ExecCommand
from tidal.runtime.exec_session import MAX_QUEUED, READ_SIZE, STDERR, STDOUT, ExecSession


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
    await session.write(b"model.bin\n")
    await session.close_stdin()
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
    await session.write(b"hi\n")
    await session.close_stdin()  # ^D: cat sees the end of its input
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


@pytest.mark.parametrize("tty", [False, True])
async def test_input_larger_than_any_buffer_arrives_whole(tty: bool) -> None:
    """`kubectl cp` into a replica sends a whole file on stdin: written as the command reads
    it, none dropped when the pipe or the terminal's buffer is full."""
    size = 4 << 20
    command = ExecCommand(("sh", "-c", f"stty raw -echo 2>/dev/null; head -c {size} | wc -c"))
    session = await ExecSession.start(command, stdin=True, tty=tty)
    await asyncio.sleep(0.2)  # stty has set the terminal raw
    await asyncio.wait_for(session.write(b"x" * size), 30)
    output = joined(await asyncio.wait_for(collect(session), 30), STDOUT)
    assert output.strip() == str(size).encode()
    session.close()


@pytest.mark.parametrize("tty", [False, True])
async def test_a_slow_reader_holds_the_command_back_instead_of_queueing_its_output(
    tty: bool,
) -> None:
    """`kubectl exec POD -- cat /dev/zero` with a client that reads slowly: tidal keeps at most
    MAX_QUEUED chunks, the command waits on its full pipe or terminal, and nothing is lost."""
    command = ExecCommand(("head", "-c", str(8 * MAX_QUEUED * READ_SIZE), "/dev/zero"))
    session = await ExecSession.start(command, stdin=False, tty=tty)
    await asyncio.sleep(0.5)  # the command writes as fast as it can; nobody reads
    assert session._output.qsize() <= MAX_QUEUED + 1
    assert session.process.returncode is None  # blocked on its output
    total = sum(len(data) for _, data in await asyncio.wait_for(collect(session), 30))
    assert total == 8 * MAX_QUEUED * READ_SIZE
    assert await session.wait() == 0
    session.close()


async def test_a_command_that_does_not_exist_cannot_start() -> None:
    with pytest.raises(FileNotFoundError):
        await ExecSession.start(ExecCommand(("no-such-command-here",)), False, False)
