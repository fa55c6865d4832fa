"""DexPipeline reconciled by the operator process against the real KFP 2.17 API server: the
package uploaded once per content, parameters checked and typed before anything is sent, the
schedule as one recurring run (suspended, replaced on a change, never duplicated across an
operator restart), status mirrored from KFP's runs, KFP unreachable reported and recovered,
KFP killed after making a run and restarted without a duplicate, and deletion removing the
recurring run."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from opkit import (
    DriftEndpoint,
    apply,
    condition,
    dexpipeline,
    events_for,
    finish_workflow,
    get_json,
    kubectl,
    promoted_dexmodel,
)

from dex_operator.kfp import KfpClient
from dex_testing.devcluster import eventually
from dex_testing.faults import CrashAfterWrite
from dex_testing.kfp_backend import KFPBackend
from dex_testing.kserve_standin import KServeStandIn
from dexctl.processes import free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

API = "/apis/v2beta1"


def dp(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(kubeconfig, "dexpipeline", name, "-n", namespace)
    return found


def wait_ready(kubeconfig: Path, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = dp(kubeconfig, namespace, name)
        cond = condition(obj, "Ready")
        generation = obj["metadata"]["generation"]
        fresh = (obj.get("status") or {}).get("observedGeneration") == generation
        return (
            obj if fresh and cond and (cond["status"], cond["reason"]) == ("True", reason) else None
        )

    found: dict[str, Any] = eventually(ready, timeout=60, interval=0.3, what=f"{name} {reason}")
    return found


def patch(kubeconfig: Path, namespace: str, name: str, spec: dict[str, Any]) -> None:
    kubectl(
        kubeconfig, "patch", "dexpipeline", name, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": spec}),
    )  # fmt: skip


def recurring(backend: KFPBackend, run_id: str) -> httpx.Response:
    return httpx.get(f"{backend.url}{API}/recurringruns/{run_id}", timeout=10)


def recurring_named(backend: KFPBackend, experiment: str, display: str) -> list[dict[str, Any]]:
    with KfpClient(backend.url) as kfp:
        experiment_id = kfp.ensure_experiment(experiment)
    listed = httpx.get(
        f"{backend.url}{API}/recurringruns",
        params={"experiment_id": experiment_id, "page_size": 50},
        timeout=10,
    ).json()
    runs: list[dict[str, Any]] = listed.get("recurringRuns") or listed.get("recurring_runs") or []
    return [r for r in runs if r["display_name"] == display]


@pytest.fixture(scope="module")
def pipeline_operator(operator_factory: Any, kfp_backend: KFPBackend, namespace: str) -> Any:
    return operator_factory(
        DEX_KFP_URL=kfp_backend.url,
        DEX_KFP_UI_URL="http://kfp-ui.example",
        DEX_PIPELINE_SYNC_SECONDS="1",
        DEX_NAMESPACES=json.dumps([namespace]),
    )


def test_schedule_suspend_change_restart_status_and_delete(
    kubeconfig: Path,
    namespace: str,
    kfp_backend: KFPBackend,
    pipeline_operator: Any,
    operator_factory: Any,
) -> None:
    name, experiment = "retrain", f"dex-{uuid.uuid4().hex[:6]}"
    display = f"{namespace}.{name}"
    apply(kubeconfig, dexpipeline(namespace, name, experiment))
    obj = wait_ready(kubeconfig, namespace, name, "Scheduled")
    status = obj["status"]
    assert status["pipelineVersion"].startswith("dex-training-")
    first = status["recurringRunId"]
    got = recurring(kfp_backend, first).json()
    assert got["status"] == "ENABLED"
    assert got["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    # Typed by the package's own input definitions: n_trials is an integer there.
    assert got["runtime_config"]["parameters"]["n_trials"] == 5
    assert got["display_name"] == display

    patch(kubeconfig, namespace, name, {"suspend": True})
    obj = wait_ready(kubeconfig, namespace, name, "Suspended")
    assert obj["status"]["recurringRunId"] == first
    assert recurring(kfp_backend, first).json()["status"] == "DISABLED"

    # A run of this DexPipeline (as a drift trigger would name it) shows in its status.
    with KfpClient(kfp_backend.url) as kfp:
        experiment_id = kfp.ensure_experiment(experiment)
        version = kfp.ensure_version("dex-training", _package())
        run, _ = kfp.ensure_run(
            experiment_id=experiment_id, version=version, display_name=f"{display}.manual-1",
            parameters={"entity_source": "/data/labels.parquet"}, description="by hand",
        )  # fmt: skip

    def listed() -> dict[str, Any] | None:
        last = (dp(kubeconfig, namespace, name).get("status") or {}).get("lastRun")
        return last if last and last["id"] == run.run_id else None

    last = eventually(listed, timeout=30, interval=0.3, what="the run in status.lastRun")
    assert last["link"] == f"http://kfp-ui.example/#/runs/details/{run.run_id}"
    assert last["state"]

    # What the schedule runs changed: KFP cannot edit a recurring run, so it is replaced.
    patch(kubeconfig, namespace, name, {"suspend": False, "parameters": {"n_trials": "7"}})
    obj = wait_ready(kubeconfig, namespace, name, "Scheduled")
    second = obj["status"]["recurringRunId"]
    assert second != first
    assert recurring(kfp_backend, first).status_code == 404
    assert recurring(kfp_backend, second).json()["runtime_config"]["parameters"]["n_trials"] == 7

    # A restarted operator finds what it made: still one recurring run, the same one.
    pipeline_operator.kill()
    operator_factory(
        DEX_KFP_URL=kfp_backend.url,
        DEX_PIPELINE_SYNC_SECONDS="1",
        DEX_NAMESPACES=json.dumps([namespace]),
    )
    patch(kubeconfig, namespace, name, {"parameters": {"n_trials": "7", "seed": "1"}})
    obj = wait_ready(kubeconfig, namespace, name, "Scheduled")
    assert [r["recurring_run_id"] for r in recurring_named(kfp_backend, experiment, display)] == [
        obj["status"]["recurringRunId"]
    ]

    kubectl(kubeconfig, "delete", "dexpipeline", name, "-n", namespace, "--timeout=60s")
    assert recurring_named(kfp_backend, experiment, display) == []


def _package() -> bytes:
    from dex_pipelines.catalog import COMPILED_DIR

    return (COMPILED_DIR / "training.yaml").read_bytes()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (
            {"parameters": {"entity_source": "x", "bogus": "1"}},
            "spec.parameters.bogus: not an input",
        ),
        ({"parameters": {"n_trials": "5"}}, "spec.parameters.entity_source: required"),
        ({"parameters": {"entity_source": "x", "n_trials": "many"}}, "spec.parameters.n_trials"),
    ],
    ids=["unknown", "missing", "mistyped"],
)
def test_a_spec_kfp_would_refuse_is_refused_first_naming_the_field(
    kubeconfig: Path,
    namespace: str,
    kfp_backend: KFPBackend,
    pipeline_operator: Any,
    spec: dict[str, Any],
    needle: str,
) -> None:
    name, experiment = f"bad-{uuid.uuid4().hex[:6]}", f"dex-{uuid.uuid4().hex[:6]}"
    apply(kubeconfig, dexpipeline(namespace, name, experiment, **spec))

    def refused() -> dict[str, Any] | None:
        cond = condition(dp(kubeconfig, namespace, name), "Ready")
        return cond if cond and cond["reason"] == "InvalidSpec" else None

    cond = eventually(refused, timeout=30, interval=0.3, what="Ready=False InvalidSpec")
    assert cond["status"] == "False"
    degraded = condition(dp(kubeconfig, namespace, name), "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert needle in cond["message"]
    events = [e for e in events_for(kubeconfig, namespace, name) if e["reason"] == "InvalidSpec"]
    assert [(e["type"], e["message"]) for e in events] == [("Warning", cond["message"])]
    # Nothing reached KFP.
    assert recurring_named(kfp_backend, experiment, f"{namespace}.{name}") == []
    kubectl(kubeconfig, "delete", "dexpipeline", name, "-n", namespace, "--timeout=60s")


def test_kfp_unreachable_is_degraded_then_recovers_without_duplicates(
    kubeconfig: Path, namespace: str, kfp_backend: KFPBackend, pipeline_operator: Any
) -> None:
    name, experiment = "outage", f"dex-{uuid.uuid4().hex[:6]}"
    (dead,) = free_ports(1)
    apply(
        kubeconfig,
        dexpipeline(
            namespace,
            name,
            experiment,
            kfp={"experiment": experiment, "endpoint": f"http://127.0.0.1:{dead}"},
        ),
    )

    def degraded() -> dict[str, Any] | None:
        cond = condition(dp(kubeconfig, namespace, name), "Degraded")
        return cond if cond and cond["status"] == "True" else None

    cond = eventually(degraded, timeout=30, interval=0.3, what="Degraded=True")
    assert cond["reason"] == "KfpUnreachable"
    assert f"127.0.0.1:{dead}" in cond["message"]
    warnings = [
        e for e in events_for(kubeconfig, namespace, name) if e["reason"] == "KfpUnreachable"
    ]
    assert len(warnings) == 1, warnings

    patch(
        kubeconfig,
        namespace,
        name,
        {"kfp": {"experiment": experiment, "endpoint": kfp_backend.url}},
    )
    obj = wait_ready(kubeconfig, namespace, name, "Scheduled")
    assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]
    assert len(recurring_named(kfp_backend, experiment, f"{namespace}.{name}")) == 1
    kubectl(kubeconfig, "delete", "dexpipeline", name, "-n", namespace, "--timeout=60s")


def test_a_drift_crossing_starts_exactly_one_run(
    kubeconfig: Path,
    namespace: str,
    kfp_backend: KFPBackend,
    pipeline_operator: Any,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    model, name, experiment = "churn-drift", "on-drift", f"dex-{uuid.uuid4().hex[:6]}"
    version = promoted_dexmodel(kubeconfig, namespace, model, "s3://models/churn/1")
    drift.set(model, version, 0.1)
    obj = dexpipeline(
        namespace, name, experiment,
        triggers=[{"dexModel": model, "threshold": 0.3, "cooldown": "1s"}],
    )  # fmt: skip
    del obj["spec"]["schedule"]
    apply(kubeconfig, obj)

    def triggers_at(share: float) -> dict[str, Any] | None:
        status = dp(kubeconfig, namespace, name).get("status") or {}
        found = (status.get("triggers") or [{}])[0]
        return found if found.get("driftShare") == share else None

    armed = eventually(lambda: triggers_at(0.1), timeout=30, interval=0.3, what="share 0.1 read")
    assert (armed["above"], armed["crossings"]) == (False, 0)
    assert condition(dp(kubeconfig, namespace, name), "TriggersActive")["status"] == "True"  # type: ignore[index]

    drift.set(model, version, 0.6)
    fired = eventually(lambda: triggers_at(0.6), timeout=30, interval=0.3, what="crossing")
    assert fired["crossings"] == 1
    run_name = f"{namespace}.{name}.drift-{model}-1"
    with KfpClient(kfp_backend.url) as kfp:
        experiment_id = kfp.ensure_experiment(experiment)
        run = kfp.find_run(experiment_id, run_name)
    assert run is not None
    assert run.run_id == fired["lastRunId"]
    got = httpx.get(f"{kfp_backend.url}{API}/runs/{run.run_id}", timeout=10).json()
    assert "drift share 0.600 of DexModel churn-drift crossed 0.3" in got["description"]
    events = [e for e in events_for(kubeconfig, namespace, name) if e["reason"] == "DriftTriggered"]
    assert len(events) == 1
    assert run_name in events[0]["message"]

    # Still above on later syncs: the same crossing. Below, then above again while that run
    # is still pending (no Argo controller runs it here): recorded, not run. Once the run has
    # finished (its Workflow's status patched, playing Argo; KFP's persistence agent reports
    # it), the next crossing runs again.
    drift.set(model, version, 0.7)
    eventually(lambda: triggers_at(0.7), timeout=30, interval=0.3, what="share 0.7 read")
    drift.set(model, version, 0.1)
    eventually(lambda: triggers_at(0.1), timeout=30, interval=0.3, what="share 0.1 read")
    drift.set(model, version, 0.8)
    again = eventually(lambda: triggers_at(0.8), timeout=30, interval=0.3, what="2nd crossing")
    assert again["crossings"] == 1
    assert "no run: run" in again["message"]
    assert "PENDING" in again["message"]
    finish_workflow(kubeconfig, run.run_id)

    def last_state() -> str | None:
        last = (dp(kubeconfig, namespace, name).get("status") or {}).get("lastRun") or {}
        return last.get("state") if last.get("id") == run.run_id else None

    eventually(lambda: last_state() == "SUCCEEDED", timeout=60, interval=0.5, what="SUCCEEDED")
    drift.set(model, version, 0.1)
    eventually(lambda: triggers_at(0.1), timeout=30, interval=0.3, what="share 0.1 read")
    drift.set(model, version, 0.9)
    third = eventually(lambda: triggers_at(0.9), timeout=30, interval=0.3, what="3rd crossing")
    assert third["crossings"] == 2
    with KfpClient(kfp_backend.url) as kfp:
        drift_runs = [
            r.display_name
            for r in kfp.runs(experiment_id)
            if r.display_name.startswith(f"{namespace}.{name}.drift-")
        ]
    assert sorted(drift_runs) == [run_name, f"{namespace}.{name}.drift-{model}-2"]
    kubectl(kubeconfig, "delete", "dexpipeline", name, "-n", namespace, "--timeout=60s")
    kubectl(kubeconfig, "delete", "dm", model, "-n", namespace, "--timeout=60s")


def test_kfp_killed_after_making_the_run_makes_no_duplicate_after_restart(
    kubeconfig: Path,
    namespace: str,
    kfp_backend: KFPBackend,
    pipeline_operator: Any,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    """KFP SIGKILLed mid-reconcile, at the worst moment: the drift run's create succeeded in
    KFP (its database has the run) and the API server died before its answer reached the
    operator. Restarted on the same stores, the operator's retry finds the run by its key."""
    model, name, experiment = "churn-crash", "crash", f"dex-{uuid.uuid4().hex[:6]}"
    version = promoted_dexmodel(kubeconfig, namespace, model, "s3://models/churn/2")
    drift.set(model, version, 0.1)

    def trigger() -> dict[str, Any]:
        found: dict[str, Any] = (
            (dp(kubeconfig, namespace, name).get("status") or {}).get("triggers") or [{}]
        )[0]
        return found

    with CrashAfterWrite(
        kfp_backend.url, method="POST", path_suffix=f"{API}/runs", crash=kfp_backend.kill_apiserver
    ) as proxy:
        obj = dexpipeline(
            namespace, name, experiment,
            kfp={"experiment": experiment, "endpoint": proxy.url},
            triggers=[{"dexModel": model, "threshold": 0.3, "cooldown": "1s"}],
        )  # fmt: skip
        del obj["spec"]["schedule"]
        apply(kubeconfig, obj)
        eventually(lambda: trigger().get("driftShare") == 0.1, timeout=30, what="armed at 0.1")

        drift.set(model, version, 0.6)
        eventually(proxy.crashed.is_set, timeout=30, what="the run made, then KFP killed")
        made = json.loads(proxy.lost_answer)["run_id"]

        def degraded() -> dict[str, Any] | None:
            cond = condition(dp(kubeconfig, namespace, name), "Degraded")
            return cond if cond and cond["status"] == "True" else None

        cond = eventually(degraded, timeout=30, interval=0.3, what="Degraded=True")
        assert cond["reason"] == "KfpUnreachable"
        assert trigger().get("crossings", 0) == 0  # the operator never learned of the run

        kfp_backend.restart_apiserver()
        for agent in ("persistence-agent", "scheduledworkflow"):  # they outlive the crash
            kfp_backend.children[agent].check_alive()
        fired = eventually(
            lambda: trigger() if trigger().get("crossings") == 1 else None,
            timeout=60,
            interval=0.3,
            what="the crossing recorded after KFP restarted",
        )
        assert fired["lastRunId"] == made
        with KfpClient(kfp_backend.url) as kfp:
            experiment_id = kfp.ensure_experiment(experiment)
            runs = [r.run_id for r in kfp.runs(experiment_id)]
        assert runs == [made]
        assert condition(dp(kubeconfig, namespace, name), "Degraded")["status"] == "False"  # type: ignore[index]
        # Deleted while its KFP endpoint (the proxy) still answers: its finalizer asks KFP.
        kubectl(kubeconfig, "delete", "dexpipeline", name, "-n", namespace, "--timeout=60s")
    kubectl(kubeconfig, "delete", "dm", model, "-n", namespace, "--timeout=60s")
