"""A command run in a replica for `kubectl exec` (docs/kubectl.md#exec): started from the
runtime's ExecCommand, with pipes, or with a pseudo-terminal when the client has one (so a shell
prompts and `podman exec --tty` finds a terminal), its output read as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Callable

from tidal.runtime.base import ExecCommand

# Kubernetes' remote command protocol, as `kubectl exec` speaks it over a WebSocket: each
# message starts with its channel. The command's streams are numbered as their channels.
PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
READ_SIZE = 32 * 1024
# Chunks read ahead of the client (at most 1 MiB): beyond, the command's output waits, so a
# slow client holds the command back instead of filling tidal's memory.
MAX_QUEUED = 32
TERMINAL_FULL_WAIT_S = 0.01


class ExecSession:
    """One running command: `next_output()` gives (stream, bytes) until it has written
    everything; `write`/`close_stdin`/`resize` feed it; `wait()` gives its exit code."""

    def __init__(self, process: asyncio.subprocess.Process, terminal: int | None) -> None:
        self.process = process
        self.terminal = terminal  # the pseudo-terminal's controller side, with a tty
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._room = asyncio.Event()  # set while fewer than MAX_QUEUED chunks wait
        self._room.set()
        self._pumps: list[asyncio.Task[None]] = []
        self._terminal_paused = False

    @classmethod
    async def start(cls, command: ExecCommand, stdin: bool, tty: bool) -> ExecSession:
        """Run `command` (OSError, ValueError if it cannot start)."""
        if not tty:
            process = await asyncio.create_subprocess_exec(
                *command.argv,
                env=command.env,
                cwd=command.cwd,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=command.preexec_fn,
            )
            session = cls(process, None)
            session._pump_pipes()
            return session
        controller, terminal = os.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                *command.argv,
                env=command.env,
                cwd=command.cwd,
                stdin=terminal,
                stdout=terminal,
                stderr=terminal,
                preexec_fn=_own_terminal(terminal, command.preexec_fn),
            )
        except BaseException:
            os.close(controller)
            raise
        finally:
            os.close(terminal)
        os.set_blocking(controller, False)
        session = cls(process, controller)
        asyncio.get_running_loop().add_reader(controller, session._read_terminal)
        return session

    async def next_output(self) -> tuple[int, bytes] | None:
        """The next chunk the command wrote, or None once it has closed its output."""
        chunk = await self._output.get()
        if self._output.qsize() < MAX_QUEUED:
            self._room.set()
            if self._terminal_paused and self.terminal is not None:
                self._terminal_paused = False
                asyncio.get_running_loop().add_reader(self.terminal, self._read_terminal)
        return chunk

    def _queue(self, chunk: tuple[int, bytes]) -> None:
        self._output.put_nowait(chunk)
        if self._output.qsize() >= MAX_QUEUED:
            self._room.clear()

    async def write(self, data: bytes) -> None:
        """Give the command `data`; returns once it has room for more (so a client sending
        faster than the command reads, `kubectl cp` of a large file, waits instead of
        queueing). Input to a command that has gone is dropped."""
        if self.terminal is not None:
            view = memoryview(data)
            while view and self.terminal is not None:
                try:
                    view = view[os.write(self.terminal, view) :]
                except BlockingIOError:  # the terminal's input buffer is full
                    await asyncio.sleep(TERMINAL_FULL_WAIT_S)
                except OSError:
                    return
        elif self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.process.stdin.drain()

    async def close_stdin(self) -> None:
        if self.terminal is not None:
            await self.write(b"\x04")  # end of input, as a terminal says it
        elif self.process.stdin is not None:
            self.process.stdin.close()

    def resize(self, width: int, height: int) -> None:
        """The terminal's size; the command (and `podman exec`, which passes it on) get
        SIGWINCH from the kernel."""
        if self.terminal is not None:
            with contextlib.suppress(OSError):
                size = struct.pack("HHHH", height, width, 0, 0)
                fcntl.ioctl(self.terminal, termios.TIOCSWINSZ, size)

    async def wait(self) -> int:
        code = await self.process.wait()
        return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it

    def kill(self) -> None:
        """End the command and what it started (the client went)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        if self.terminal is not None:
            asyncio.get_running_loop().remove_reader(self.terminal)
            os.close(self.terminal)
            self.terminal = None

    def _pump_pipes(self) -> None:
        streams = [(STDOUT, self.process.stdout), (STDERR, self.process.stderr)]
        remaining = len(streams)

        async def pump(number: int, reader: asyncio.StreamReader) -> None:
            nonlocal remaining
            while await self._room.wait() and (data := await reader.read(READ_SIZE)):
                self._queue((number, data))
            remaining -= 1
            if remaining == 0:
                self._output.put_nowait(None)

        for number, reader in streams:
            assert reader is not None
            self._pumps.append(asyncio.ensure_future(pump(number, reader)))

    def _read_terminal(self) -> None:
        assert self.terminal is not None
        try:
            data = os.read(self.terminal, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process holding the terminal has closed it
            data = b""
        if data:
            self._queue((STDOUT, data))
            if not self._room.is_set():
                self._terminal_paused = True
                asyncio.get_running_loop().remove_reader(self.terminal)
            return
        asyncio.get_running_loop().remove_reader(self.terminal)
        self._output.put_nowait(None)


def _own_terminal(terminal: int, then: Callable[[], None] | None) -> Callable[[], None]:
    """In the child: a session of its own whose controlling terminal is `terminal`, so a shell
    has job control and ^C reaches the command. (By its own descriptor, not stdin, and with
    setsid here rather than start_new_session: uvloop runs preexec_fn before it sets up the
    child's stdio.)"""

    def preexec() -> None:
        os.setsid()
        fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)
        if then is not None:
            then()

    return preexec
