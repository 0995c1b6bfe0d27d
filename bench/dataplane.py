"""Data-plane benchmark: requests/s and latency of tidal's gateway against nginx as a proxy.

    python bench/dataplane.py [--duration 10] [--connections 50] [--threads 1] [--rounds 3]
    python bench/dataplane.py --http2 [--connections 4] [--streams 16] ...

Starts a fast upstream answering `200 ok` (nginx, or bench/upstream.py without nginx), then runs
wrk against (a) the upstream directly, (b) tidal's GatewayServer in its own uvloop process with a
static router, and (c) nginx with one worker as a keep-alive reverse proxy (when installed).
With `--http2` the clients speak HTTP/2 with prior knowledge instead (h2load, `--streams`
requests in flight on each connection; apt-get install nghttp2-client) to tidal and nginx, which
send each request to the HTTP/1.1 upstream on keep-alive connections, as for a browser that
chose h2 over TLS; the upstream directly gets wrk's HTTP/1.1 on as many connections as there
are requests in flight. Configurations run interleaved, `--rounds` times each; medians are printed,
then one JSON line. Everything listens on 127.0.0.1; nginx runs as the current user from a
temporary prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "bench.default.example.com"

UPSTREAM_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/upstream.pid;
error_log {tmp}/upstream-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{ return 200 "ok"; }}
    }}
}}
"""

PROXY_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/proxy.pid;
error_log {tmp}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    keepalive_requests 1000000;
    upstream replica {{
        server 127.0.0.1:{upstream};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} {http2}backlog=1024;
        http2_max_concurrent_streams 1024;
        location / {{
            proxy_pass http://replica;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def serve_tidal(port: int, upstream: int) -> None:
    """Run tidal's gateway on `port` with its real request path (host routing, activator,
    stats, metrics) in front of one endpoint: `upstream`."""
    sys.path.insert(0, str(ROOT))
    import uvloop

    from tidal.gateway.activator import Endpoint, RevisionThrottler
    from tidal.gateway.proxy import GatewayServer
    from tidal.gateway.routing import TrafficRouter

    async def main() -> None:
        router = TrafficRouter()
        throttler = RevisionThrottler("default", "bench", "bench-00001", 0, 30.0, 10_000)
        throttler.add_endpoint(Endpoint("bench-00001-0", "127.0.0.1", upstream))
        router.throttlers["default/bench-00001"] = throttler
        router.set_hosts(set(), {"bench.default.example.com": [("default/bench-00001", 100)]})
        gateway = GatewayServer(router)
        await gateway.start("127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 10.0, http1: bool = True) -> None:
    """Until `port` answers `ok` over HTTP/1.1, or (`http1` False) takes connections."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": HOST})
    while True:
        try:
            if not http1:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            with urllib.request.urlopen(request, timeout=1) as resp:
                if resp.read() == b"ok":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server on port {port} did not come up")
        time.sleep(0.1)


def start_nginx(nginx: str, tmp: Path, name: str, conf: str) -> subprocess.Popen[bytes]:
    path = tmp / f"{name}.conf"
    path.write_text(conf)
    return subprocess.Popen([nginx, "-p", str(tmp), "-c", str(path)], stderr=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process, then SIGKILL what is still there after 5 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def interleaved(
    ports: dict[str, int],
    rounds: int,
    run: Callable[[int], dict[str, float]],
    show: Callable[[dict[str, float]], str],
) -> dict[str, list[dict[str, float]]]:
    """Each configuration's run once per round, in turn, `rounds` times (so that the machine's
    noise falls on all of them alike), each result printed; the results per configuration."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
    for round_ in range(1, rounds + 1):
        for name, port in ports.items():
            result = run(port)
            runs[name].append(result)
            print(f"round {round_} {name:7} {show(result)}")
    return runs


def medians_of(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per configuration, the median of each figure over its runs."""
    return {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(
    port: int, args: argparse.Namespace, path: str = "/", script: Path | None = None
) -> dict[str, float]:
    """One wrk run (with a Lua `script` that sets the request, if given); requests/s and
    p50/p99 latency in milliseconds."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    cmd += ["-s", str(script)] if script is not None else []
    cmd += ["-H", f"Host: {HOST}", f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    if rps is None or len(latency) != 2:
        raise SystemExit(f"could not read wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        print(f"  warning: wrk saw errors on port {port}:\n{out}", file=sys.stderr)

    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
        return float(number) * _UNITS[unit]

    return {"rps": float(rps.group(1)), "p50_ms": ms(latency["50"]), "p99_ms": ms(latency["99"])}


def run_h2load(
    port: int,
    duration: int,
    clients: int,
    streams: int,
    headers: tuple[str, ...] = (),
    data: Path | None = None,
    path: str = "/",
) -> dict[str, float]:
    """One h2load run, HTTP/2 with prior knowledge; requests/s and the mean latency in
    milliseconds."""
    cmd = ["h2load", f"--duration={duration}", "--warm-up-time=1", f"--clients={clients}"]
    cmd.append(f"--max-concurrent-streams={streams}")
    cmd += [f"--header={header}" for header in headers]
    cmd += [f"--data={data}"] if data is not None else []
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    mean = re.search(r"time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(\w+)", out)
    if rps is None or done is None or mean is None:
        raise SystemExit(f"could not read h2load output:\n{out}")
    if done.group(3) != done.group(2):
        print(f"  warning: h2load saw failures on port {port}:\n{out}", file=sys.stderr)
    return {"rps": float(rps.group(1)), "mean_ms": float(mean.group(1)) * _UNITS[mean.group(2)]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--http2", action="store_true", help="clients speak h2c (h2load)")
    parser.add_argument("--streams", type=int, default=16, help="with --http2: per connection")
    parser.add_argument(
        "--serve-tidal", nargs=2, type=int, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_tidal:
        serve_tidal(*args.serve_tidal)
        return
    client = "h2load" if args.http2 else "wrk"
    if shutil.which(client) is None:
        package = "nghttp2-client" if args.http2 else "wrk"
        print(f"{client} is required (apt-get install {package})", file=sys.stderr)
        sys.exit(2)
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            ports = {"direct": free_port(), "tidal": free_port()}
            up = ports["direct"]
            if nginx:
                procs.append(
                    start_nginx(nginx, tmp, "upstream", UPSTREAM_CONF.format(tmp=tmp, port=up))
                )
            else:
                procs.append(
                    subprocess.Popen([sys.executable, str(ROOT / "bench/upstream.py"), str(up)])
                )
            tidal_cmd = [sys.executable, __file__, "--serve-tidal", str(ports["tidal"]), str(up)]
            procs.append(subprocess.Popen(tidal_cmd))
            if nginx:
                ports["nginx"] = free_port()
                http2 = "http2 " if args.http2 else ""
                conf = PROXY_CONF.format(tmp=tmp, port=ports["nginx"], upstream=up, http2=http2)
                procs.append(start_nginx(nginx, tmp, "proxy", conf))
            for name, port in ports.items():
                wait_ready(port, http1=not (args.http2 and name == "nginx"))
            runs = interleaved(ports, args.rounds, lambda port: run(port, ports, args), show)
        finally:
            stop(procs)

    medians = medians_of(runs)
    in_flight = args.connections * (args.streams if args.http2 else 1)
    print(f"\nmedians of {args.rounds} runs, {in_flight} in flight, {args.duration} s each")
    for name, m in medians.items():
        print(f"  {name:7} {show(m)}")
    ratios = {"tidal/direct": medians["tidal"]["rps"] / medians["direct"]["rps"]}
    if "nginx" in medians:
        ratios["tidal/nginx"] = medians["tidal"]["rps"] / medians["nginx"]["rps"]
    for name, ratio in ratios.items():
        print(f"  {name}: {ratio:.2f}x")
    upstream = "nginx" if nginx else "bench/upstream.py"
    record = {
        "bench": "dataplane",
        "client_protocol": "h2c" if args.http2 else "http/1.1",
        "upstream": upstream,
        "connections": args.connections,
        "streams": args.streams if args.http2 else 1,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "medians": medians,
        "ratios": ratios,
    }
    print(json.dumps(record))


def run(port: int, ports: dict[str, int], args: argparse.Namespace) -> dict[str, float]:
    """One load run against `port`: wrk, or with --http2 h2load (HTTP/1.1 to the upstream)."""
    if not args.http2:
        return run_wrk(port, args)
    if port == ports["direct"]:  # HTTP/1.1 only: one connection per request in flight
        in_flight = args.connections * args.streams
        return run_wrk(port, argparse.Namespace(**{**vars(args), "connections": in_flight}))
    authority = (f":authority: {HOST}",)
    return run_h2load(port, args.duration, args.connections, args.streams, authority)


def show(result: dict[str, float]) -> str:
    if "p50_ms" in result:
        p50, p99 = result["p50_ms"], result["p99_ms"]
        return f"{result['rps']:>10.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms"
    return f"{result['rps']:>10.0f} req/s  mean {result['mean_ms']:.2f} ms"


if __name__ == "__main__":
    main()
