"""Crash harness: the operator SIGKILLed at random points of whole rollouts, over 20 seeds.

Each seed is one rollout run to its end (promotion, or rollback on a failing drift gate);
seeds run four at a time under one operator, so a kill meant for one rollout also lands at a
random point of the others. A watcher reads the DexModels every few milliseconds; on every
change it sees (a step advanced, a phase entered) it may kill the operator at once: status is written before the
InferenceService (see the controller), so a kill right after a status change lands between
the operator's two writes. Kills at the final transition (Promoted / RolledBack seen, canary
not yet removed) are included. Each kill is followed by a fresh operator process.

Asserted per seed: the weight sequence KServe was asked for is exactly the one a rollout
without crashes produces (no step skipped, none repeated, nothing after the end), the end
state is right, and the rollout ended. Asserted over all seeds: kills landed mid-rollout,
at promotion and at rollback.

The KServe controller is stood in for by ``KServeStandIn`` (status patched through the
API); its ``history`` is the deduplicated sequence of canary weights written to the
InferenceService."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from opkit import DriftEndpoint, apply, dexmodel, final_history, kubectl, uri_version

from dex_testing.devcluster import eventually
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.operator_process import OperatorProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

V1, V2 = "s3://models/crash/1", "s3://models/crash/2"
STEPS = [10, 25, 50, 75]
SEEDS = list(range(20))
AT_ONCE = 4
MAX_KILLS = 8  # per batch of AT_ONCE rollouts
KILL_CHANCE = 0.5


def _rolls_back(seed: int) -> bool:
    return seed % 3 == 2


def _expected(rollback: bool) -> list[int | None]:
    # Rollback: the drift gate fails at the first step (failureLimit 1: two failures).
    return [None, 0, STEPS[0], None] if rollback else [None, 0, *STEPS, None]


def _point(status: dict[str, Any]) -> tuple[str, int | None, str | None]:
    return (str(status.get("phase")), status.get("currentStep"), status.get("canaryVersion"))


def _run_batch(
    seeds: list[int],
    api: client.CustomObjectsApi,
    kubeconfig: Path,
    namespace: str,
    start: Any,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> list[str]:
    """Rollouts of these seeds under random kills; returns the phases the kills landed in."""
    rng = random.Random(seeds[0])
    names = {seed: f"crash-{seed}" for seed in seeds}

    def status(name: str) -> dict[str, Any]:
        obj = api.get_namespaced_custom_object(
            "dex.dataenginex.io", "v1alpha1", namespace, "dexmodels", name
        )
        return dict(obj.get("status") or {})

    op: OperatorProcess = start()
    try:
        for seed, name in names.items():
            drift.set(name, uri_version(V2), 0.9 if _rolls_back(seed) else 0.01)
            obj = dexmodel(name, namespace, storage_uri=V1, steps=STEPS, interval="1s")
            assert apply(kubeconfig, obj).returncode == 0
        for name in names.values():
            eventually(
                lambda n=name: status(n).get("phase") == "Promoted",  # type: ignore[misc]
                timeout=30,
                what=f"{name} promoted",
            )
        patch = f'{{"spec":{{"model":{{"storageUri":"{V2}"}}}}}}'
        for name in names.values():
            kubectl(kubeconfig, "patch", "dm", name, "-n", namespace, "--type=merge", "-p", patch)

        def ended(seed: int) -> bool:
            now = status(names[seed])
            history = kserve.history(namespace, names[seed])
            return (
                now.get("phase") == ("RolledBack" if _rolls_back(seed) else "Promoted")
                and not now.get("canaryVersion")
                and len(history) > 2
                and history[-1] is None
            )

        kills: list[str] = []
        seen = {seed: _point(status(name)) for seed, name in names.items()}
        deadline = time.monotonic() + 180
        while not all(ended(seed) for seed in seeds):
            assert time.monotonic() < deadline, {n: status(n) for n in names.values()}
            for seed, name in names.items():
                point = _point(status(name))
                if point == seen[seed]:
                    continue
                seen[seed] = point
                if len(kills) >= MAX_KILLS or rng.random() >= KILL_CHANCE:
                    continue
                op.kill()
                kills.append(point[0])
                frozen = status(name)
                # Nothing moves while no operator runs.
                assert point[0] != "Progressing" or _point(frozen) == point, (point, frozen)
                op = start()
                resumed = status(name)
                if frozen.get("phase") == resumed.get("phase") == "Progressing":
                    assert (resumed.get("currentStep") or 0) >= (frozen.get("currentStep") or 0)
            time.sleep(0.005)  # the watcher's sampling period, not a wait for a condition

        for seed, name in names.items():
            rollback = _rolls_back(seed)
            assert final_history(kserve, namespace, name) == _expected(rollback), (seed, kills)
            final = status(name)
            assert final["stableVersion"] == uri_version(V1 if rollback else V2), final
        return kills
    finally:
        op.stop()


def test_sigkill_at_random_points_over_20_seeds_skips_and_repeats_nothing(
    kubeconfig: Path,
    namespace: str,
    operator_factory: object,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))
    landed: Counter[str] = Counter()
    for first in range(0, len(SEEDS), AT_ONCE):
        batch = SEEDS[first : first + AT_ONCE]
        landed.update(
            _run_batch(batch, api, kubeconfig, namespace, operator_factory, kserve, drift)
        )
    print(f"\ncrash harness: {len(SEEDS)} seeds, kills by phase: {dict(landed)}")
    assert sum(landed.values()) >= len(SEEDS), landed
    assert landed["Progressing"] > 0, landed
    assert landed["Promoted"] > 0, landed
    assert landed["RolledBack"] > 0, landed
