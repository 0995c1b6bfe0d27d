"""One gateway worker of `tidal up`: `python -m tidal.gateway.worker`, started by
`tidal.gateway.workers` with the gateway's listening socket as an inherited file descriptor.

It is `tidal gateway` (tidal.gateway.mirror) on that socket: it follows the controller's routing
state through the admin API with the data dir's token, and it dies with the `tidal up` that
started it, so a killed platform leaves no worker holding its port.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from tidal.api.config import GatewayLimits
from tidal.security.credentials import read_token_file
from tidal.security.tls import server_context

log = logging.getLogger("tidal.gateway")
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), then make sure the
    parent had not died already."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        log.warning("cannot ask to die with tidal up (not Linux?)")
    if os.getppid() != parent:
        sys.exit(1)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tidal.gateway.worker")
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--controller", required=True, help="admin API URL")
    parser.add_argument("--id", required=True, help="name in the controller's stats")
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--ca-cert", help="CA of the admin API's TLS certificate")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--limits", default="{}", help="GatewayLimits fields as JSON")
    parser.add_argument("--parent", type=int, required=True, help="pid of tidal up")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    die_with_parent(args.parent)
    # tidal up signals its workers itself (a terminal's Ctrl-C goes to tidal up alone: the
    # workers run in their own session), so SIGINT here is only a second stop signal.
    import uvloop

    from tidal.gateway.mirror import Unauthorized, run_gateway
    from tidal.runtime.hygiene import make_non_dumpable

    make_non_dumpable()
    limits = GatewayLimits.from_json(args.limits)
    token = read_token_file(args.token_file)
    tls = server_context(args.tls_cert, args.tls_key) if args.tls_cert and args.tls_key else None
    sock = socket.socket(fileno=args.fd)
    host, port = sock.getsockname()[:2]
    try:
        uvloop.run(
            run_gateway(
                args.controller, host, port, args.id, token, args.ca_cert, limits, sock, tls
            )
        )
    except Unauthorized as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
