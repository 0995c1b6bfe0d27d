"""Data-plane benchmark: requests/s and latency of tidal's gateway against nginx as a proxy.

    python bench/dataplane.py [--duration 10] [--connections 50] [--threads 1] [--rounds 3]

Starts a fast upstream answering `200 ok` (nginx, or bench/upstream.py without nginx), then runs
wrk against (a) the upstream directly, (b) tidal's GatewayServer in its own uvloop process with a
static router, and (c) nginx with one worker as a keep-alive reverse proxy (when installed).
Configurations run interleaved, `--rounds` times each; medians are printed, then one JSON line.
Everything listens on 127.0.0.1; nginx runs as the current user from a temporary prefix.
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
        listen 127.0.0.1:{port} backlog=1024;
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


def wait_ready(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": HOST})
    while True:
        try:
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


def run_wrk(port: int, args: argparse.Namespace) -> dict[str, float]:
    """One wrk run; requests/s and p50/p99 latency in milliseconds."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    cmd += ["-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--serve-tidal", nargs=2, type=int, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_tidal:
        serve_tidal(*args.serve_tidal)
        return
    if shutil.which("wrk") is None:
        print("wrk is required (apt-get install wrk); not found on PATH", file=sys.stderr)
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
                conf = PROXY_CONF.format(tmp=tmp, port=ports["nginx"], upstream=up)
                procs.append(start_nginx(nginx, tmp, "proxy", conf))
            for port in ports.values():
                wait_ready(port)

            runs = interleaved(
                ports,
                args.rounds,
                lambda port: run_wrk(port, args),
                lambda r: (
                    f"{r['rps']:>10.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                ),
            )
        finally:
            stop(procs)

    medians = medians_of(runs)
    print(
        f"\nmedians of {args.rounds} runs, {args.connections} connections, {args.duration} s each"
    )
    for name, m in medians.items():
        rps, p50, p99 = m["rps"], m["p50_ms"], m["p99_ms"]
        print(f"  {name:7} {rps:>10.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    ratios = {"tidal/direct": medians["tidal"]["rps"] / medians["direct"]["rps"]}
    if "nginx" in medians:
        ratios["tidal/nginx"] = medians["tidal"]["rps"] / medians["nginx"]["rps"]
    for name, ratio in ratios.items():
        print(f"  {name}: {ratio:.2f}x")
    upstream = "nginx" if nginx else "bench/upstream.py"
    record = {
        "bench": "dataplane",
        "upstream": upstream,
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "medians": medians,
        "ratios": ratios,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
