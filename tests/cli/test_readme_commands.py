"""The README's commands run from a clone and print what it says: `tidal up` with the example
config and services prints exactly the README's curl lines (on the ports it was given), and
those curls are answered."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from tests.integration.harness import REPO, free_port, wait_until

README = (REPO / "README.md").read_text()


def _readme_up_command() -> list[str]:
    line = next(x for x in README.splitlines() if "python3 -m tidal up" in x)
    return line.split("python3 -m tidal", 1)[1].split()


def test_tidal_up_prints_the_readme_curls_and_they_answer(tmp_path):
    args = _readme_up_command()
    assert args[:3] == ["up", "--config", "examples/tidal.yaml"]
    port, admin = free_port(), free_port()
    log = tmp_path / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidal",
                *args,
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                str(port),
                "--admin-port",
                str(admin),
                "--kube-port",
                "0",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"COLUMNS": "250", **os.environ},
        )
    try:
        wait_until(lambda: "Ctrl-C stops" in log.read_text(), 60, "tidal up to print its banner")
        printed = [x.strip() for x in log.read_text().splitlines() if x.strip().startswith("curl")]
        promised = [
            x.replace(":8080", f":{port}")
            for x in re.findall(r"^curl -H 'Host: [^']+' http://127\.0\.0\.1:8080/$", README, re.M)
        ]
        assert promised and printed == promised
        for curl in promised:
            host = re.search(r"Host: ([^']+)", curl).group(1)
            result = wait_until(
                lambda host=host: _get(port, host), 60, f"{host} to answer", period=0.5
            )
            assert result == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(port: int, host: str) -> int | None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        return conn.getresponse().status
    except OSError:
        time.sleep(0.2)
        return None
    finally:
        conn.close()
