"""The training pipeline through kfp.local: wall time per step, split into process start
+ imports vs. the step's own work, and end to end. Default size: 50k customers (labelled
rows), 20 Optuna trials. Targets: the whole pipeline under 60 s, and at most 2x its floor.

The floor is the same training work in one plain Python process: every step's own work
(each step function, with its reads and writes), plus one process start and its imports,
paid once instead of once per step, from the same run. (KFP runs one container per step in a
cluster; that is what the ratio prices.)"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

CUSTOMERS = int(os.environ.get("DEX_BENCH_CUSTOMERS", "50000"))
TRIALS = int(os.environ.get("DEX_BENCH_TRIALS", "20"))
TARGET_S = 60.0
_TIMING = re.compile(r"DEX_STEP_TIMING (\{.*\})")


def run() -> list[dict[str, object]]:
    from dex import features
    from dex.data import GeneratorConfig, generate, write_parquet
    from dex.settings import DexSettings
    from dex_components.steps import TIMING_MARKER
    from dexctl.local_runner import default_parameters, run_local

    assert TIMING_MARKER in _TIMING.pattern
    with tempfile.TemporaryDirectory(prefix="dex-bench-") as tmp:
        # Stores come from this run's state folder only, not from an earlier benchmark's.
        for var in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI",
            "DEX_MLFLOW_TRACKING_URI",
            "DEX_MLFLOW_REGISTRY_URI",
            "DEX_FEAST_REGISTRY",
            "DEX_FEAST_ONLINE_DB",
            "DEX_DATA_DIR",
        ):
            os.environ.pop(var, None)
        settings = DexSettings(state_dir=Path(tmp))
        write_parquet(generate(GeneratorConfig(n_customers=CUSTOMERS)), settings.data_dir)
        features.apply(settings)
        params = {**default_parameters("training", settings), "n_trials": TRIALS}
        result = run_local("training", params, settings)
        timings = {
            t["step"]: t
            for t in (json.loads(m.group(1)) for m in _TIMING.finditer(result.log_path.read_text()))
        }
    step_fn = {
        "validate-data": "validate_data",
        "build-training-set": "build_training_set",
        "time-split": "split",
        "tune": "tune",
        "train-model": "train",
        "evaluate-model": "evaluate",
        "register-and-promote": "register_and_promote",
    }
    rows: list[dict[str, object]] = []
    walls, startups, works = [], [], []
    for step in result.steps:
        timing = timings.get(step_fn.get(step.name, ""), {})
        wall = step.seconds or 0.0
        startup, work = float(timing.get("startup_s", 0.0)), float(timing.get("work_s", 0.0))
        walls.append(wall)
        startups.append(startup)
        works.append(work)
        rows.append(
            {
                "step": step.name,
                "wall_s": round(wall, 2),
                "startup+imports_s": startup,
                "work_s": work,
                "other_s": round(wall - startup - work, 2),
            }
        )
    floor = sum(works) + max(startups, default=0.0)
    rows.append(
        {
            "step": "FLOOR: the steps' work in one plain process (one start + imports)",
            "wall_s": round(floor, 2),
            "startup+imports_s": max(startups, default=0.0),
            "work_s": round(sum(works), 2),
        }
    )
    rows.append(
        {
            "step": f"END TO END ({CUSTOMERS} rows, {TRIALS} trials; target < {TARGET_S:.0f} s, "
            "<= 2x floor)",
            "wall_s": round(result.seconds, 2),
            "startup+imports_s": round(sum(startups), 2),
            "work_s": round(sum(works), 2),
            "other_s": round(result.seconds - sum(startups) - sum(works), 2),
            "ratio_to_floor": round(result.seconds / floor, 2) if floor else None,
        }
    )
    return rows
