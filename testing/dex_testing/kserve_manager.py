"""The real KServe controller (v0.20 manager, ``make kserve``) run from this machine against a
cluster: its CRDs, its ``inferenceservice-config`` ConfigMap (Standard mode) and its mutating
and validating webhooks, served by the manager itself on 127.0.0.1.

``tools/kserve/build.sh`` builds the manager from KServe's Go module and copies the module's
``config/crd/full``, ``config/configmap`` and ``config/webhook`` next to it; nothing of KServe
is committed. ``KServeManager`` installs them as KServe's kustomize overlay would, with three
differences a manager outside the cluster needs:

* ``deploy.defaultDeploymentMode`` is ``Standard`` (upstream: ``Serverless``, which reports
  ``ServerlessModeRejected`` where no Knative runs); every other key is upstream's, ``ingress``
  included (without Gateway API, Standard mode writes a ``networking.k8s.io`` Ingress with
  class ``istio``, which nothing serves; DEX routes with its own HTTPRoute).
* the webhook server's certificate is a fresh self-signed one for 127.0.0.1, in the folder
  controller-runtime reads (``$TMPDIR/k8s-webhook-server/serving-certs``), with a TMPDIR of
  the manager's own;
* the webhook configurations name ``https://127.0.0.1:<port>/<path>`` and that CA instead of
  the in-cluster Service; rules, paths and failure policies are upstream's.

The manager runs with the kubeconfig it is given (the tests' admin), so no RBAC objects are
made. On exit the webhook configurations go first (with ``failurePolicy: Fail`` they would
refuse every InferenceService write once nothing answers), then the process, then KServe's
finalizer on InferenceServices still there (nothing would ever remove it). The CRDs, the
namespace and the ConfigMap stay: they are the cluster's installation, as KServe's are.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel

from dex_testing import SOURCE_ROOT
from dex_testing.crds import kubectl_binary, run_kubectl, wait_established
from dex_testing.devcluster.pki import generate_pki
from dex_testing.lifecycle import Started
from dexctl.processes import Child, free_ports

log = logging.getLogger(__name__)

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "kserve" / "build.sh"
NAMESPACE = "kserve"
CONFIGMAP = "inferenceservice-config"
DEPLOYMENT_MODE = "Standard"
FINALIZER = "inferenceservice.finalizers"
ISVC_CRD = "inferenceservices.serving.kserve.io"
_WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class MissingKServeError(RuntimeError):
    """The manager binary (or its manifests) is not built."""


class KServeAssets(BaseModel):
    folder: Path
    manager: Path
    crd: Path  # a kustomize folder: config/crd/full of the module
    configmap: Path  # config/configmap/inferenceservice.yaml
    webhooks: Path  # config/webhook/manifests.yaml


def kserve_folder() -> Path:
    """The folder build.sh uses, computed by build.sh itself so there is one definition."""
    if explicit := os.environ.get("DEX_KSERVE_DIR"):
        return Path(explicit)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def find_kserve() -> KServeAssets:
    folder = kserve_folder()
    assets = KServeAssets(
        folder=folder,
        manager=folder / "manager",
        crd=folder / "crd",
        configmap=folder / "configmap" / "inferenceservice.yaml",
        webhooks=folder / "webhook" / "manifests.yaml",
    )
    needed = (assets.manager, assets.crd / "kustomization.yaml", assets.configmap, assets.webhooks)
    missing = [str(path) for path in needed if not path.is_file()]
    if not missing and not os.access(assets.manager, os.X_OK):
        missing.append(f"{assets.manager} (not executable)")
    if missing:
        raise MissingKServeError(
            f"the KServe manager is not built: missing {', '.join(missing)}. Run `make kserve` "
            "(builds KServe v0.20's manager from its Go module, once per machine; ~8 min) or "
            "point DEX_KSERVE_DIR at a folder holding it."
        )
    return assets


def standard_configmap(upstream: Path) -> dict[str, Any]:
    """The module's ``inferenceservice-config`` with ``deploy.defaultDeploymentMode`` set to
    ``Standard``; every other key as upstream has it."""
    configmap: dict[str, Any] = yaml.safe_load(upstream.read_text())
    deploy = json.loads(configmap["data"]["deploy"])
    deploy["defaultDeploymentMode"] = DEPLOYMENT_MODE
    configmap["data"]["deploy"] = json.dumps(deploy, indent=2)
    configmap["metadata"]["namespace"] = NAMESPACE
    return configmap


def local_webhooks(upstream: Path, *, port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """KServe's webhook configurations, each webhook pointed at ``https://127.0.0.1:<port>``
    with ``ca_pem`` as its CA bundle instead of the in-cluster Service."""
    bundle = base64.b64encode(ca_pem).decode()
    out = []
    for doc in yaml.safe_load_all(upstream.read_text()):
        if not doc or doc.get("kind") not in _WEBHOOK_KINDS:
            continue
        config = copy.deepcopy(doc)
        config["metadata"] = {
            "name": doc["metadata"]["name"],
            "labels": {"app.kubernetes.io/managed-by": "dex-testing"},
        }
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
        out.append(config)
    return out


def probe_isvc(name: str) -> dict[str, Any]:
    """A small custom-container InferenceService: what the webhook is asked to default."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "probe"}]}},
    }


class KServeManager(Started):
    """Installs KServe into the cluster ``kubeconfig`` names and runs its manager; a context
    manager. ``work`` holds the manager's TMPDIR (webhook certificates), PKI and log."""

    def __init__(self, kubeconfig: Path, work: Path, *, timeout: float = 120.0) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.work = Path(work)
        self.timeout = timeout
        self.log = self.work / "kserve-manager.log"
        self.child: Child | None = None
        self.webhook_port = 0
        self.metrics_port = 0
        self.probe_port = 0
        self._webhooks: list[tuple[str, str]] = []  # (kind, name) registered
        self._kubectl = ""

    # --- kubectl -------------------------------------------------------------------------
    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.kubeconfig,
            *args,
            stdin=stdin,
            check=check,
            timeout=timeout,
            kubectl=self._kubectl or None,
        )

    def _apply(self, objects: list[dict[str, Any]]) -> None:
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        assets = find_kserve()
        self._kubectl = kubectl_binary()
        self.work.mkdir(parents=True, exist_ok=True)
        self._install(assets)

        pki = generate_pki(self.work / "pki")
        tmpdir = self.work / "tmp"
        certs = tmpdir / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pki.serving.cert, certs / "tls.crt")  # SANs include 127.0.0.1
        shutil.copyfile(pki.serving.key, certs / "tls.key")
        (certs / "tls.key").chmod(0o600)

        self.webhook_port, self.metrics_port, self.probe_port = free_ports(3)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAMESPACE": NAMESPACE,
            "TMPDIR": str(tmpdir),
        }
        self.child = Child(
            "kserve-manager",
            [
                str(assets.manager),
                f"-metrics-addr=127.0.0.1:{self.metrics_port}",
                f"-health-probe-addr=127.0.0.1:{self.probe_port}",
                f"-webhook-port={self.webhook_port}",
            ],
            log=self.log,
            env=env,
        )
        readyz = f"http://127.0.0.1:{self.probe_port}/readyz"
        self.child.wait_ready(
            lambda: httpx.get(readyz, timeout=2).status_code == 200,
            timeout=self.timeout,
            what=f"ready ({readyz})",
        )

        hooks = local_webhooks(
            assets.webhooks, port=self.webhook_port, ca_pem=pki.ca.cert.read_bytes()
        )
        self._webhooks = [(h["kind"], h["metadata"]["name"]) for h in hooks]
        self._apply(hooks)
        self.child.wait_ready(
            self._defaults_an_isvc, timeout=self.timeout, what="webhooks answering"
        )
        log.info(
            "KServe manager pid=%d ready: webhooks on 127.0.0.1:%d, log %s",
            self.child.pid,
            self.webhook_port,
            self.log,
        )

    def _install(self, assets: KServeAssets) -> None:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self._apply([namespace])
        applied = self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-k", str(assets.crd), "-o", "name"
        )
        wait_established(
            self.kubeconfig,
            applied.stdout.split(),
            timeout=self.timeout,
            kubectl=self._kubectl or kubectl_binary(),
        )
        self._apply([standard_configmap(assets.configmap)])

    def _defaults_an_isvc(self) -> bool:
        """A server-side dry-run create comes back defaulted by KServe's mutating webhook."""
        done = self.kubectl(
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            stdin=json.dumps(probe_isvc(f"probe-{uuid.uuid4().hex[:8]}")),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        container = json.loads(done.stdout)["spec"]["predictor"]["containers"][0]
        return bool(container.get("resources"))

    def stop(self) -> None:
        for kind, name in self._webhooks:
            self.kubectl(
                "delete",
                f"{kind.lower()}.admissionregistration.k8s.io",
                name,
                "--ignore-not-found",
                check=False,
            )
        self._webhooks = []
        if self.child is not None:
            self.child.stop()
            self.child = None
            self._release_finalizers()

    def _release_finalizers(self) -> None:
        """Take KServe's finalizer off InferenceServices left: nothing processes it now, so
        deleting one (or its namespace) would hang forever."""
        listed = self.kubectl("get", ISVC_CRD, "-A", "-o", "json", check=False)
        if listed.returncode != 0:
            return
        for item in json.loads(listed.stdout).get("items", []):
            meta = item["metadata"]
            finalizers = meta.get("finalizers") or []
            if FINALIZER not in finalizers:
                continue
            index = finalizers.index(FINALIZER)
            patch = [
                {"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
                {"op": "remove", "path": f"/metadata/finalizers/{index}"},
            ]
            with contextlib.suppress(RuntimeError):
                self.kubectl(
                    "patch",
                    ISVC_CRD,
                    meta["name"],
                    "-n",
                    meta["namespace"],
                    "--type=json",
                    "-p",
                    json.dumps(patch),
                )
