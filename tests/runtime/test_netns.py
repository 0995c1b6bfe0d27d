"""A connection made in another process's network namespace (tidal.runtime.netns): what
`kubectl port-forward` uses to reach a container's unpublished port."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading

import pytest

from tidal.runtime.netns import connect_inside

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="a network namespace of its own needs root, unshare(1) and ip(8) for its loopback",
)
# Listens on 127.0.0.1 in its own network namespace, says its port, answers one line.
SERVER = """
import socket
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
connection, _ = listener.accept()
connection.sendall(b"inside:" + connection.recv(100))
"""


async def test_a_port_inside_another_network_namespace_is_reached_and_only_there():
    server = subprocess.Popen(
        [
            "unshare",
            "--net",
            "sh",
            "-c",
            f"ip link set lo up && exec {sys.executable} -c '{SERVER}'",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with pytest.raises(ConnectionRefusedError):  # not in this namespace
            await asyncio.open_connection("127.0.0.1", port)
        threads = {thread.name for thread in threading.enumerate()}
        sock = await connect_inside(server.pid, port)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"hello")
        assert await reader.read() == b"inside:hello"
        writer.close()
        for _ in range(100):  # the thread that entered it ends, leaving nothing there
            if {thread.name for thread in threading.enumerate()} == threads:
                break
            await asyncio.sleep(0.01)
        assert {thread.name for thread in threading.enumerate()} == threads
        with pytest.raises(OSError, match="no process"):
            await connect_inside(2**22 + 1, port)
    finally:
        server.kill()
        server.wait()
