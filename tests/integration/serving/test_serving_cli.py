"""``dexctl serve`` as a user runs it: serves the champion, and SIGTERM stops its children."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from dex_testing.serving_world import World
from dexctl.polling import GiveUpError, eventually

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="serving")]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descendants(root: int) -> list[int]:
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    parents = {pid: _parent(pid) for pid in pids}
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("component", ["transformer", "predictor"])
def test_dexctl_serve_answers_and_stops_cleanly_on_sigterm(world: World, component: str) -> None:
    dexctl = Path(sys.executable).with_name("dexctl")
    env = {
        **os.environ,
        **world.env,
        "DEX_STATE_DIR": str(world.root / "state"),
        "MLFLOW_TRACKING_URI": world.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "200",
    }
    command = [
        str(dexctl), "serve", "--no-monitor", "--feature-component", component,
        "--log-file", str(world.root / f"cli-serve-{component}.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def served_url() -> str:
            if proc.poll() is not None:
                raise GiveUpError("dexctl serve exited:\n" + "".join(lines))
            found = re.search(
                r"http://127\.0\.0\.1:\d+/v1/models/churn-classifier:predict", "".join(lines)
            )
            return found.group(0) if found else ""

        url = eventually(served_url, timeout=180, interval=0.2, what="dexctl serve's URL")
        children = _descendants(proc.pid)
        # A transformer and a predictor, or one feature-reading predictor.
        servers = [p for p in children if "dex_serving.run" in _cmdline(p)]
        assert len(servers) == (2 if component == "transformer" else 1), servers
        response = httpx.post(url, json={"instances": [{"customer_id": world.reference_ids[0]}]})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["customer_id"] == world.reference_ids[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    assert [pid for pid in children if _alive(pid)] == [], "children outlived dexctl serve"
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={"instances": [{"customer_id": world.reference_ids[0]}]})
