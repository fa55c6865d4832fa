"""Whole `make test` wall time on this machine, cold and warm, against the budget we hold.

Not re-run here (a cold run takes tens of minutes): ``make test`` appends every run to
``~/.cache/dex/make-test-runs.jsonl`` (tools/test-clock.sh), and this prints the newest
cold run (envtest and images caches absent at its start: it built everything) and the newest
warm one. CI allows 90 min on 2 cores; we hold a cold run (which builds the Kubernetes
binaries, KServe, Traefik, CoreDNS, KFP's backend, Argo CD and four images) to 60 min, a third
of CI's time to spare.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CI_LIMIT_S = 90 * 60
BUDGET_S = 60 * 60


def _runs() -> list[dict[str, object]]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dex"
    path = cache / "make-test-runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run() -> list[dict[str, object]]:
    runs = [r for r in _runs() if r.get("status") == 0]
    cold = [r for r in runs if "envtest" in str(r.get("cold", ""))]
    # Go's build cache cold too: nothing on the machine had compiled Go before (recorded
    # since tools/test-clock.sh notes it; older cold runs do not say).
    fresh = [r for r in cold if "go-build" in str(r.get("cold", "")).split()]
    # Warm: the Kubernetes binaries and images were cached (a fresh .venv from uv's cache is
    # seconds, so it still counts as warm).
    builds = {
        "envtest", "images", "kserve", "gateway", "coredns", "kfp", "kfp-ui", "argo-workflows",
        "argocd",
    }  # fmt: skip
    warm = [r for r in runs if not builds & set(str(r.get("cold", "")).split())]
    rows: list[dict[str, object]] = []
    cases = (
        ("fresh machine (Go build cache empty too)", fresh),
        ("cold DEX caches (builds everything)", cold),
        ("warm (caches present)", warm),
    )
    for label, chosen in cases:
        if not chosen:
            rows.append({"bench": "make test", "case": label, "minutes": "no run recorded"})
            continue
        newest = chosen[-1]
        seconds = float(str(newest["seconds"]))
        rows.append(
            {
                "bench": "make test",
                "case": label,
                "finished": newest["finished"],
                "minutes": round(seconds / 60, 1),
                "budget min": BUDGET_S / 60,
                "ratio to budget": round(seconds / BUDGET_S, 2),
                "CI limit min": CI_LIMIT_S / 60,
            }
        )
    return rows
