"""A TCP connection made inside another process's network namespace: how `kubectl port-forward`
reaches a container's port that is not published (a sidecar's, a debug server's), as the
kubelet's forwarder connects to localhost inside the pod's network.

A socket belongs to the namespace it was made in, and setns(2) moves only the calling thread
into a network namespace; so a thread of its own enters it, connects, and ends, leaving the
connected socket to the event loop and no thread of the platform behind in the container's
network. Entering needs CAP_SYS_ADMIN over the namespace (a rootful engine run as root).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import threading

CLONE_NEWNET = 0x40000000


def _connect_inside(pid: int, port: int, timeout_s: float) -> socket.socket:
    """In the calling thread, which stays in the namespace: only for a thread of its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/proc/{pid}/ns/net", "rb") as namespace:
        if libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"cannot enter its network: {os.strerror(code)}")
    return socket.create_connection(("127.0.0.1", port), timeout_s)


async def connect_inside(pid: int, port: int, timeout_s: float = 5.0) -> socket.socket:
    """A socket connected to 127.0.0.1:`port` in the network namespace of process `pid`;
    OSError (as connect raises it) when nothing listens there or it cannot be entered."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[socket.socket] = loop.create_future()

    def settle(result: socket.socket | None, error: BaseException | None) -> None:
        if done.cancelled():
            if result is not None:
                result.close()
        elif error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            connected = _connect_inside(pid, port, timeout_s)
        except OSError as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, connected, None)

    if not os.path.exists(f"/proc/{pid}/ns/net"):
        raise OSError(errno.ESRCH, f"no process {pid}")
    threading.Thread(target=run, name=f"connect-in-{pid}", daemon=True).start()
    connected = await done
    connected.setblocking(False)
    return connected
