"""``dexctl serve`` as a user runs it: serves the champion, and SIGTERM stops its children."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from dex_testing.serving_world import World

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="serving")]


def test_dexctl_serve_answers_and_stops_cleanly_on_sigterm(world: World) -> None:
    dexctl = Path(sys.executable).with_name("dexctl")
    env = {
        **os.environ,
        **world.env,
        "DEX_STATE_DIR": str(world.root / "state"),
        "MLFLOW_TRACKING_URI": world.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "200",
    }
    proc = subprocess.Popen(
        [str(dexctl), "serve", "--no-monitor", "--log-file", str(world.root / "cli-serve.log")],
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
        deadline = time.monotonic() + 180
        url = None
        while url is None:
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            found = re.search(
                r"http://127\.0\.0\.1:\d+/v1/models/churn-classifier:predict", "".join(lines)
            )
            url = found.group(0) if found else None
            time.sleep(0.2)
        response = httpx.post(url, json={"instances": [{"customer_id": world.reference_ids[0]}]})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["customer_id"] == world.reference_ids[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    reader.join(5)
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={"instances": [{"customer_id": world.reference_ids[0]}]})
