"""kill -9 of the platform, then a restart: state is back and nothing of the old replicas is left,
including a worker the replica forked (`sh -c "worker & exec app"`). Checked through /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.integration.harness import (
    FAST_AUTOSCALER,
    HELLO_DIR,
    Platform,
    hello_service,
    host,
    process_alive,
    wait_until,
)

WORKER = "import time; time.sleep(300)  # tidal-test-worker"


def group_of(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def test_kill_9_and_restart_leaves_no_orphans(tmp_path) -> None:
    platform = Platform(tmp_path, {"autoscaler": FAST_AUTOSCALER}).start()
    try:
        service = hello_service("forks", annotations={"autoscaling.knative.dev/min-scale": "1"})
        container = service["spec"]["template"]["spec"]["containers"][0]
        container["command"] = ["sh", "-c", f'python3 -c "{WORKER}" & exec python3 app.py']
        container["workingDir"] = str(HELLO_DIR)
        platform.apply(service)
        platform.wait_ready("forks", timeout=60)
        [replica] = platform.replicas("forks")
        leader = replica["pid"]
        members = wait_until(lambda: len(group_of(leader)) == 2 and group_of(leader), 10, "worker")
        [worker] = [pid for pid in members if pid != leader]

        platform.stop(kill=True)
        assert wait_until(lambda: not process_alive(leader), 5, "the app to die with tidal")
        time.sleep(0.5)
        assert process_alive(worker), "the worker should outlive a kill -9 of tidal (the case)"

        started = time.monotonic()
        platform.start()
        assert wait_until(lambda: not process_alive(worker), 10, "the restart to kill the worker")
        reaped = time.monotonic() - started
        assert group_of(leader) == []
        assert "killed what a previous run left" in platform.log_path.read_text()

        platform.wait_ready("forks", timeout=60)
        assert platform.request(host("forks"))[0] == 200
        [replacement] = platform.replicas("forks")
        assert replacement["pid"] != leader
        print(f"\nkill -9 then restart: worker {worker} killed {reaped:.1f}s after the restart")
    finally:
        platform.stop()
