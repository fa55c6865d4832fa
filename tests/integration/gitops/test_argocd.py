"""The real Argo CD (3.6.1's application controller and repo server, ``make argocd``) syncing a
git repository into the test control plane, with the sync policy and ignoreDifferences of
DEX's dev Application and DEX's Lua health checks loaded from argocd-cm:

- the Application syncs to Synced, and to Healthy once the operator reports the model Ready;
- a DexModel the operator reports RolledBack/Degraded is Degraded in the Application's own
  status (per resource and as a whole), and Healthy again once Promoted and Ready;
- self-heal undoes hand edits of a DexModel's spec and of a ConfigMap, and leaves alone what
  the operator writes (status, its annotation and finalizer): a status write starts no sync.

No DEX operator runs here: the test plays it, writing ``status`` through the status
subresource under its own field manager, as dex_operator does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dex_testing import SOURCE_ROOT
from dex_testing.argocd import HEALTH_COMPONENT, IN_CLUSTER, NAMESPACE, ArgoCD
from dex_testing.crds import run_kubectl
from dex_testing.devcluster import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

log = logging.getLogger(__name__)

APP = "dex-argocd-test"
TARGET = "dex-argocd-test"  # the namespace the DexModel and ConfigMap are synced into
REPO = "dex-gitops"
MODEL = "churn"
SETTINGS = "dex-argocd-test-settings"
DEV_APPLICATION = SOURCE_ROOT / "kustomize" / "argocd" / "applications" / "dev.yaml"
SAMPLE = SOURCE_ROOT / "manifests" / "samples" / "dexmodel_canary.yaml"
CRDS = SOURCE_ROOT / "manifests" / "crd"
OPERATOR = "dex-operator-test"  # the field manager the test writes status under
OPERATOR_ANNOTATION = "dex.dataenginex.io/last-handled-configuration"
OPERATOR_FINALIZER = "dex.dataenginex.io/operator"
TIMEOUT = 90.0
T = TypeVar("T")


# --- the Application's status, as read from the API server (only the fields checked) --------
class _Loose(BaseModel):
    # Argo CD's camelCase JSON names; unknown fields are not this test's business.
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class Health(_Loose):
    status: str = ""
    message: str = ""


class ResourceStatus(_Loose):
    group: str = ""
    kind: str
    name: str
    namespace: str = ""
    status: str = ""
    health: Health | None = None


class SyncStatus(_Loose):
    status: str = ""
    revision: str = ""


class Operation(_Loose):
    phase: str = ""
    started_at: str = ""
    message: str = ""


class AppStatus(_Loose):
    sync: SyncStatus = Field(default_factory=SyncStatus)
    health: Health = Field(default_factory=Health)
    resources: list[ResourceStatus] = Field(default_factory=list)
    operation_state: Operation | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    reconciled_at: str = ""

    def resource(self, kind: str, name: str) -> ResourceStatus | None:
        return next((r for r in self.resources if r.kind == kind and r.name == name), None)


class Application(_Loose):
    annotations: dict[str, str]
    status: AppStatus


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return run_kubectl(kubeconfig, *args, stdin=stdin).stdout


def application(kubeconfig: Path) -> Application:
    raw = json.loads(kubectl(kubeconfig, "get", "application", APP, "-n", NAMESPACE, "-o", "json"))
    return Application(
        annotations=raw["metadata"].get("annotations") or {}, status=raw.get("status") or {}
    )


def get(kubeconfig: Path, kind: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(
        kubectl(kubeconfig, "get", kind, name, "-n", TARGET, "-o", "json")
    )
    return obj


def waited(check: Callable[[], T | None], what: str) -> T:
    """``eventually`` for checks that answer None until they hold."""
    found = eventually(check, timeout=TIMEOUT, what=what)
    assert found is not None
    return found


def refresh(kubeconfig: Path) -> None:
    """Ask the controller to compare now (else its 3-minute resync)."""
    kubectl(
        kubeconfig, "annotate", "application", APP, "-n", NAMESPACE, "--overwrite",
        "argocd.argoproj.io/refresh=normal",
    )  # fmt: skip


def refreshed(kubeconfig: Path) -> Application:
    """Refresh, then wait until the controller has compared (it drops the annotation when
    it writes the comparison's result)."""
    refresh(kubeconfig)

    def check() -> Application | None:
        app = application(kubeconfig)
        return None if "argocd.argoproj.io/refresh" in app.annotations else app

    return waited(check, f"the Application {APP}'s refresh to complete")


def app_state(kubeconfig: Path, sync: str, health: str) -> Application:
    """Wait for the Application's sync and health status."""

    def check() -> Application | None:
        app = application(kubeconfig)
        if app.status.sync.status == sync and app.status.health.status == health:
            return app
        return None

    return waited(check, f"Application {APP} {sync} and {health}")


def model_health(kubeconfig: Path, status: str) -> tuple[Application, Health]:
    """Wait for the DexModel's health in the Application's own status.resources[]."""

    def check() -> tuple[Application, Health] | None:
        app = application(kubeconfig)
        found = app.status.resource("DexModel", MODEL)
        if found is not None and found.health is not None and found.health.status == status:
            return app, found.health
        return None

    return waited(check, f"DexModel {MODEL} health {status} in the app's status.resources[]")


def operator_writes_status(kubeconfig: Path, status: dict[str, Any] | None) -> dict[str, Any]:
    """Play the DEX operator: write ``status`` (None clears it) through the status subresource
    under the operator's own field manager, for the DexModel's current generation."""
    if status is not None:
        generation = get(kubeconfig, "dexmodel", MODEL)["metadata"]["generation"]
        status = {"observedGeneration": generation, **status}
    out = kubectl(
        kubeconfig, "patch", "dexmodel", MODEL, "-n", TARGET, "--subresource=status",
        "--type=merge", f"--field-manager={OPERATOR}", "-o", "json",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    patched: dict[str, Any] = json.loads(out)
    return patched


def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


PROMOTED = {
    "phase": "Promoted",
    "stableVersion": "3",
    "canaryWeight": 0,
    "message": "version 3 serves all traffic",
    "conditions": [
        condition("Ready", "True", "Promoted", "version 3 serves all traffic"),
        condition("Degraded", "False", "Promoted", ""),
    ],
}
ROLLED_BACK = {
    "phase": "RolledBack",
    "stableVersion": "2",
    "canaryVersion": "3",
    "canaryWeight": 0,
    "message": "canary rolled back",
    "conditions": [
        condition("Ready", "True", "StableServing", "version 2 serves all traffic"),
        condition("Degraded", "True", "AnalysisFailed", "errors: error rate 0.2 > 0.01"),
    ],
}


# --- the git repository and the Application ---------------------------------------------------
def repository_files() -> dict[str, str]:
    """DEX's CRDs and the canary sample DexModel (in the test's namespace), a ConfigMap, and a
    kustomization over them: the repo server renders it with the kustomize build.sh built."""
    files = {f"crd/{path.name}": path.read_text() for path in sorted(CRDS.iterdir())}
    model = yaml.safe_load(SAMPLE.read_text())
    model["metadata"]["namespace"] = TARGET
    files["models/dexmodel.yaml"] = yaml.safe_dump(model, sort_keys=False)
    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SETTINGS, "namespace": TARGET},
        "data": {"logLevel": "INFO"},
    }
    files["models/configmap.yaml"] = yaml.safe_dump(settings, sort_keys=False)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["crd", "models/dexmodel.yaml", "models/configmap.yaml"],
    }
    files["kustomization.yaml"] = yaml.safe_dump(kustomization, sort_keys=False)
    return files


def application_manifest(repo_url: str) -> dict[str, Any]:
    """An Application with the dev Application's sync policy and ignoreDifferences, exactly
    as shipped; only source and destination point at this test's repository and cluster. No
    resources finalizer: deleting it must not delete the CRDs other tests use."""
    dev = yaml.safe_load(DEV_APPLICATION.read_text())["spec"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": "."},
            "destination": {"server": IN_CLUSTER, "namespace": TARGET},
            "syncPolicy": dev["syncPolicy"],
            "ignoreDifferences": dev["ignoreDifferences"],
        },
    }


class SyncedApp(BaseModel):
    kubeconfig: Path
    revision: str
    seconds_to_synced: float


@pytest.fixture(scope="module")
def synced(argocd: ArgoCD) -> Iterator[SyncedApp]:
    kubeconfig = argocd.kubeconfig
    manifest = application_manifest(argocd.repo_url(REPO))
    policy = manifest["spec"]["syncPolicy"]
    # What this module claims to test is what dev ships: fail loudly if that changes.
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert {"ServerSideApply=true", "RespectIgnoreDifferences=true"} <= set(policy["syncOptions"])
    revision = argocd.commit(REPO, repository_files(), "DEX CRDs and the churn DexModel")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TARGET}}
    kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=json.dumps(namespace))
    started = time.monotonic()
    # On a cluster without DEX's CRDs the first attempt applies them and the DexModel in one
    # wave and fails for the DexModel ("ensure CRDs are installed first": its kind is not
    # discovered yet); Argo CD's automatic retry applies it ~10 s later.
    kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=json.dumps(manifest))
    try:
        eventually(
            lambda: application(kubeconfig).status.sync.status == "Synced",
            timeout=TIMEOUT,
            what=f"Application {APP} Synced",
        )
        seconds = time.monotonic() - started
        log.info("Argo CD synced %s at %s in %.1f s", APP, revision[:12], seconds)
        yield SyncedApp(kubeconfig=kubeconfig, revision=revision, seconds_to_synced=seconds)
    finally:
        run_kubectl(kubeconfig, "delete", "application", APP, "-n", NAMESPACE,
                    "--ignore-not-found", "--wait=true", "--timeout=60s", check=False)  # fmt: skip
        # The operator's finalizer would hold the DexModel (no operator runs to drop it).
        run_kubectl(kubeconfig, "patch", "dexmodel", MODEL, "-n", TARGET, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}', check=False)  # fmt: skip
        run_kubectl(kubeconfig, "delete", "namespace", TARGET, "--ignore-not-found",
                    "--wait=false", check=False)  # fmt: skip


# --- the tests --------------------------------------------------------------------------------
def test_application_syncs_from_git_to_synced_and_healthy(synced: SyncedApp) -> None:
    kubeconfig = synced.kubeconfig
    operator_writes_status(kubeconfig, None)  # as before the operator first reconciles
    app = app_state(kubeconfig, "Synced", "Progressing")
    assert app.status.sync.revision == synced.revision
    for kind, name in (
        ("CustomResourceDefinition", "dexmodels.dex.dataenginex.io"),
        ("CustomResourceDefinition", "dexpipelines.dex.dataenginex.io"),
        ("DexModel", MODEL),
        ("ConfigMap", SETTINGS),
    ):
        found = app.status.resource(kind, name)
        assert found is not None, (kind, name, app.status.resources)
        assert found.status == "Synced", (kind, name, found)
    model = get(kubeconfig, "dexmodel", MODEL)
    assert model["spec"]["model"] == {
        "name": "churn-classifier",
        "version": "3",
        "format": "sklearn",
    }
    assert model["spec"]["rollout"]["steps"] == [10, 25, 50]
    # DEX's Lua check: no status yet means waiting for the operator, not healthy.
    _, health = model_health(kubeconfig, "Progressing")
    assert health.message == "Waiting for the DEX operator to reconcile this DexModel"

    operator_writes_status(kubeconfig, PROMOTED)
    app = app_state(kubeconfig, "Synced", "Healthy")
    assert app.status.sync.revision == synced.revision
    log.info("Application %s was Synced %.1f s after it was created", APP, synced.seconds_to_synced)


def test_dex_health_checks_from_argocd_cm_set_the_application_health(
    argocd: ArgoCD, synced: SyncedApp
) -> None:
    kubeconfig = synced.kubeconfig
    # Argo CD has no built-in check for DexModel: what follows comes from these keys, which
    # hold the shipped .lua files verbatim.
    checks = argocd.health_checks()
    assert checks == {
        "resource.customizations.health.dex.dataenginex.io_DexModel": (
            HEALTH_COMPONENT / "dexmodel.lua"
        ).read_text(),
        "resource.customizations.health.dex.dataenginex.io_DexPipeline": (
            HEALTH_COMPONENT / "dexpipeline.lua"
        ).read_text(),
    }

    operator_writes_status(kubeconfig, ROLLED_BACK)
    _, health = model_health(kubeconfig, "Degraded")
    assert health.message == "errors: error rate 0.2 > 0.01"  # the Degraded condition's
    app_state(kubeconfig, "Synced", "Degraded")

    operator_writes_status(kubeconfig, PROMOTED)
    _, health = model_health(kubeconfig, "Healthy")
    assert health.message == "version 3 serves all traffic"
    app_state(kubeconfig, "Synced", "Healthy")


def test_self_heal_reverts_hand_edits_and_leaves_the_operators_writes(synced: SyncedApp) -> None:
    kubeconfig = synced.kubeconfig
    # The operator's own marks on the object (kopf's annotation and finalizer), then status.
    kubectl(
        kubeconfig, "patch", "dexmodel", MODEL, "-n", TARGET, "--type=merge",
        f"--field-manager={OPERATOR}",
        "-p", json.dumps({"metadata": {
            "annotations": {OPERATOR_ANNOTATION: '{"spec": "handled"}'},
            "finalizers": [OPERATOR_FINALIZER],
        }}),
    )  # fmt: skip
    operator_writes_status(kubeconfig, PROMOTED)
    app_state(kubeconfig, "Synced", "Healthy")
    before = get(kubeconfig, "dexmodel", MODEL)

    # Hand edits of what git declares: a DexModel spec field and a ConfigMap value.
    kubectl(
        kubeconfig, "patch", "dexmodel", MODEL, "-n", TARGET, "--type=merge",
        "-p", '{"spec": {"serving": {"maxReplicas": 9}}}',
    )  # fmt: skip
    kubectl(
        kubeconfig, "patch", "configmap", SETTINGS, "-n", TARGET, "--type=merge",
        "-p", '{"data": {"logLevel": "DEBUG"}}',
    )  # fmt: skip
    started = time.monotonic()
    eventually(
        lambda: get(kubeconfig, "dexmodel", MODEL)["spec"]["serving"]["maxReplicas"] == 4,
        timeout=TIMEOUT,
        what="Argo CD to revert the DexModel's spec.serving.maxReplicas to git's 4",
    )
    eventually(
        lambda: get(kubeconfig, "configmap", SETTINGS)["data"] == {"logLevel": "INFO"},
        timeout=TIMEOUT,
        what="Argo CD to revert the ConfigMap's logLevel to git's INFO",
    )
    log.info("self-heal reverted both hand edits in %.1f s", time.monotonic() - started)

    healed = get(kubeconfig, "dexmodel", MODEL)
    assert healed["status"]["phase"] == "Promoted"
    assert healed["status"]["conditions"] == before["status"]["conditions"]
    assert healed["metadata"]["annotations"][OPERATOR_ANNOTATION] == '{"spec": "handled"}'
    assert OPERATOR_FINALIZER in healed["metadata"]["finalizers"]
    # The edit and its revert each bumped generation: the check waits for the operator.
    assert healed["metadata"]["generation"] > before["metadata"]["generation"]
    model_health(kubeconfig, "Progressing")
    operator_writes_status(kubeconfig, PROMOTED)
    app_state(kubeconfig, "Synced", "Healthy")

    # No fight: a status-only write, then a full comparison, starts no sync and writes
    # nothing to the DexModel.
    settled = refreshed(kubeconfig)
    last_operation = settled.status.operation_state
    written = operator_writes_status(kubeconfig, {**PROMOTED, "message": "still version 3"})
    after = refreshed(kubeconfig)
    assert after.status.sync.status == "Synced"
    assert after.status.operation_state == last_operation
    assert len(after.status.history) == len(settled.status.history)
    now = get(kubeconfig, "dexmodel", MODEL)
    assert now["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    assert now["status"]["message"] == "still version 3"
