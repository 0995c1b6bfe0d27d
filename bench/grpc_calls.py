"""gRPC benchmark: unary calls per second through tidal's HTTP/2 (h2c) proxy, against nginx's
grpc_pass and the gRPC server called directly.

    python bench/grpc_calls.py [--duration 10] [--connections 4] [--streams 16] [--rounds 3]
    python bench/grpc_calls.py --http1 [--connections 64] ...

The replica is a grpcio server (C core, a Python handler that echoes its request) in its own
process. h2load (apt-get install nghttp2-client) sends gRPC unary calls, framed as gRPC frames
them, over `--connections` connections with `--streams` calls in flight on each, to (a) the
server directly, (b) tidal's GatewayServer in its own uvloop process with a static router and
its real path (activator, stats), and (c) nginx with one worker and `grpc_pass` (when
installed). Configurations run interleaved, `--rounds` times each; medians are printed, then
one JSON line. Everything listens on 127.0.0.1.

With `--http1` the calls come over HTTP/1.1 instead (wrk with a Lua script: a POST of the gRPC
frame with `TE: trailers`, `--connections` connections, one call in flight on each), to tidal,
which sends each as a stream on its h2c connection (tidal.gateway.http1_h2), and to nginx's
`grpc_pass` on an HTTP/1.1 listener, which does the same; the server cannot be called directly
over HTTP/1.1, so tidal's own HTTP/2 path (h2load, the same calls in flight) is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataplane import free_port, interleaved, medians_of, run_h2load, run_wrk, start_nginx, stop

ROOT = Path(__file__).resolve().parent.parent
HOST = "bench.default.example.com"
METHOD = "/tidal.bench.Echo/Echo"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/grpc.pid;
error_log {tmp}/grpc-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    keepalive_requests 1000000;  # (1000 by default: h2load does not reconnect)
    upstream replica {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} {http2} backlog=1024;
        http2_max_concurrent_streams 1024;
        location / {{ grpc_pass grpc://replica; }}
    }}
}}
"""


def serve_replica(port: int) -> None:
    """A gRPC server whose one method echoes its request."""
    from concurrent import futures

    import grpc

    handler = grpc.method_handlers_generic_handler(
        "tidal.bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda r, c: r)}
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        options=[("grpc.max_concurrent_streams", 1024)],
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_tidal(port: int, upstream: int) -> None:
    """tidal's gateway on `port` in front of one h2c endpoint: `upstream`."""
    sys.path.insert(0, str(ROOT))
    import uvloop

    from tidal.gateway.activator import Endpoint, RevisionThrottler
    from tidal.gateway.proxy import GatewayServer
    from tidal.gateway.routing import TrafficRouter

    async def main() -> None:
        router = TrafficRouter()
        throttler = RevisionThrottler("default", "bench", "bench-00001", 0, 30.0, 10_000, h2c=True)
        throttler.add_endpoint(Endpoint("bench-00001-0", "127.0.0.1", upstream))
        router.throttlers["default/bench-00001"] = throttler
        router.set_hosts(set(), {HOST: [("default/bench-00001", 100)]})
        gateway = GatewayServer(router)
        await gateway.start("127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def wrk_script(path: Path, frame: bytes) -> Path:
    """A wrk Lua script that POSTs `frame` as a gRPC call over HTTP/1.1."""
    body = "".join(f"\\{byte}" for byte in frame)  # Lua's decimal escapes: any byte
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/grpc"\nwrk.headers["TE"] = "trailers"\n'
    )
    return path


def wait_listening(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"server on port {port} did not come up") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per h2load run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16, help="calls in flight per connection")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--http1", action="store_true", help="calls over HTTP/1.1 (wrk)")
    parser.add_argument("--threads", type=int, default=1, help="with --http1: wrk threads")
    parser.add_argument("--serve-replica", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-tidal", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_replica:
        serve_replica(args.serve_replica)
        return
    if args.serve_tidal:
        serve_tidal(*args.serve_tidal)
        return
    if shutil.which("h2load") is None or (args.http1 and shutil.which("wrk") is None):
        print("h2load and, with --http1, wrk are required", file=sys.stderr)
        sys.exit(2)
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as tmpdir:
        tmp = Path(tmpdir)
        frame = grpc_frame(b'{"instances": [[1.0, -2.0, 0.5, 3.0]]}')
        body = tmp / "call.bin"
        body.write_bytes(frame)
        script = wrk_script(tmp / "call.lua", frame)
        try:
            up = free_port()
            # With --http1 the baseline is tidal's HTTP/2 path: a gateway of its own, so that each
            # configuration has its port (the same code, another process).
            ports = {"tidal-h2": free_port()} if args.http1 else {"direct": up}
            ports["tidal"] = free_port()
            procs.append(subprocess.Popen([sys.executable, __file__, "--serve-replica", str(up)]))
            for name in ("tidal-h2", "tidal") if args.http1 else ("tidal",):
                tidal_cmd = [sys.executable, __file__, "--serve-tidal", str(ports[name]), str(up)]
                procs.append(subprocess.Popen(tidal_cmd))
            if nginx:
                ports["nginx"] = free_port()
                http2 = "" if args.http1 else "http2"
                conf = NGINX_CONF.format(tmp=tmp, port=ports["nginx"], upstream=up, http2=http2)
                procs.append(start_nginx(nginx, tmp, "grpc", conf))
            for port in {up, *ports.values()}:
                wait_listening(port)

            def h2(port: int) -> dict[str, float]:
                headers = ("content-type: application/grpc", "te: trailers", f":authority: {HOST}")
                calls = args.connections if args.http1 else args.streams
                clients = 1 if args.http1 else args.connections
                return run_h2load(port, args.duration, clients, calls, headers, body, METHOD)

            names = {port: name for name, port in ports.items()}
            runs = interleaved(
                ports,
                args.rounds,
                lambda port: (
                    h2(port)
                    if not args.http1 or names[port] == "tidal-h2"
                    else run_wrk(port, args, METHOD, script)
                ),
                _figures,
            )
        finally:
            stop(procs)

    medians = medians_of(runs)
    in_flight = args.connections * (1 if args.http1 else args.streams)
    print(f"\nmedians of {args.rounds} runs, {in_flight} calls in flight, {args.duration} s each")
    for name, m in medians.items():
        print(f"  {name:8} {_figures(m)}")
    base = "tidal-h2" if args.http1 else "direct"
    ratios = {f"tidal/{base}": medians["tidal"]["rps"] / medians[base]["rps"]}
    if "nginx" in medians:
        ratios["tidal/nginx"] = medians["tidal"]["rps"] / medians["nginx"]["rps"]
    for name, ratio in ratios.items():
        print(f"  {name}: {ratio:.2f}x")
    record = {
        "bench": "grpc",
        "client_protocol": "http/1.1" if args.http1 else "h2c",
        "connections": args.connections,
        "streams": 1 if args.http1 else args.streams,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "medians": medians,
        "ratios": ratios,
    }
    print(json.dumps(record))


def _figures(run: dict[str, float]) -> str:
    """Calls per second and the latency the client reports: h2load's mean, wrk's p50/p99."""
    if "mean_ms" in run:
        return f"{run['rps']:>9.0f} calls/s  mean {run['mean_ms']:.2f} ms"
    return f"{run['rps']:>9.0f} calls/s  p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms"


if __name__ == "__main__":
    main()
