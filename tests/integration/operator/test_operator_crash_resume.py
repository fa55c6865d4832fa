"""SIGKILL the operator process at a random point of a rollout, restart it, repeat: the
rollout resumes at the step it was on and KServe sees every weight exactly once, in order.

The KServe controller is stood in for by ``KServeStandIn`` (status patched through the API);
its ``history`` is the sequence of canary weights the InferenceService was asked for."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from opkit import DriftEndpoint, apply, dexmodel, final_history, get_json, kubectl, uri_version

from dex_testing.devcluster import eventually
from dex_testing.kserve_standin import KServeStandIn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

V1, V2 = "s3://models/crash/1", "s3://models/crash/2"
STEPS = [10, 25, 50, 75]


def status(kubeconfig: Path, ns: str, name: str) -> dict:
    return dict(get_json(kubeconfig, "dm", name, "-n", ns).get("status") or {})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_mid_rollout_resumes_without_skipping_or_repeating(
    kubeconfig: Path,
    namespace: str,
    operator_factory: object,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
    seed: int,
) -> None:
    rng = random.Random(seed)
    name = f"crash-{seed}"
    drift.set(name, uri_version(V2), 0.01)
    start = operator_factory  # type: ignore[assignment]
    op = start()  # type: ignore[operator]
    assert (
        apply(
            kubeconfig, dexmodel(name, namespace, storage_uri=V1, steps=STEPS, interval="1s")
        ).returncode
        == 0
    )
    eventually(
        lambda: status(kubeconfig, namespace, name).get("phase") == "Promoted",
        timeout=30,
        what="initial promotion",
    )
    kubectl(
        kubeconfig,
        "patch",
        "dm",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        f'{{"spec":{{"model":{{"storageUri":"{V2}"}}}}}}',
    )

    kills = 0
    while kills < 2 and status(kubeconfig, namespace, name).get("phase") != "Promoted":
        time.sleep(rng.uniform(0.2, 2.5))  # a random instant of the rollout, not a wait
        before = status(kubeconfig, namespace, name)
        op.kill()
        kills += 1
        # Nothing moves while the operator is dead...
        frozen = status(kubeconfig, namespace, name)
        assert (
            frozen.get("currentStep") == before.get("currentStep")
            or before.get("phase") != "Progressing"
        )
        op = start()  # type: ignore[operator]
        # ... and after the restart it continues from the persisted step, never earlier.
        resumed = status(kubeconfig, namespace, name)
        if frozen.get("phase") == "Progressing" and resumed.get("phase") == "Progressing":
            assert (resumed.get("currentStep") or 0) >= (frozen.get("currentStep") or 0)

    eventually(
        lambda: status(kubeconfig, namespace, name).get("phase") == "Promoted",
        timeout=60,
        what="promotion after restarts",
    )
    assert kills >= 1
    assert final_history(kserve, namespace, name) == [None, 0, *STEPS, None]
    final = status(kubeconfig, namespace, name)
    assert final["stableVersion"] == uri_version(V2)
    op.stop()
