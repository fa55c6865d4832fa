"""`make demo`'s path: ``dexctl demo`` as a user runs it, in a fresh state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(name="e2e-demo")]

DEXCTL = Path(sys.executable).with_name("dexctl")


def test_demo_trains_twice_and_records_the_gate_decision(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DEX_"))  # the demo must not lean on a caller's stores
    }
    env.update({"DEX_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "160"})
    demo = subprocess.run(
        [str(DEXCTL), "demo", "--customers", "1500", "--trials", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "pipeline training succeeded" in demo.stdout
    assert "registered model versions" in demo.stdout
    # DEX's story, not library chatter: no warnings raised in site-packages, no Feast progress.
    shown = demo.stdout + demo.stderr
    assert "site-packages" not in shown, shown[-4000:]
    assert "Materializing" not in shown

    listing = subprocess.run(
        [str(DEXCTL), "models", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    versions = {v["version"]: v for v in json.loads(listing.stdout)}
    assert set(versions) == {"1", "2"}
    assert versions["1"]["tags"]["dex.decision"] == "champion"
    assert versions["2"]["tags"]["dex.decision"] in {"champion", "challenger"}
    champion = [v for v in versions.values() if "champion" in v["aliases"]]
    assert len(champion) == 1
    assert champion[0]["tags"]["dex.feature_service"] == "churn_v1"
    assert champion[0]["metrics"]["holdout_roc_auc"] > 0.7
