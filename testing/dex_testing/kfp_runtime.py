"""KFP runs that execute: the real KFP backend, ML Metadata and Argo's workflow controller,
with a dev node running each run's pods (KFP's driver, then the component image under KFP's
launcher and Argo's executor).

The backend's processes run on this machine (``KFPBackend``, ``MLMDServer``,
``WorkflowController``); the pods reach them as a KFP installation's pods do, by the Service
names KFP 2.17 compiles into every Workflow: ``ml-pipeline`` (the API server's gRPC, for the
driver's cache lookups), ``metadata-grpc-service`` (MLMD) and ``seaweedfs`` (the artifact
store, S3 on ``:9000`` with the ``mlpipeline-minio-artifact`` Secret's keys). Each is a
Service without a selector whose EndpointSlice names the node IP, where those processes
listen: kube-proxy and the node's CoreDNS do the rest, exactly as for a Service over pods.

The driver, launcher and argoexec are static Go binaries (``make kfp``, ``make
argo-workflows``), each imported into the node's containerd as a one-binary image. The
component image is the one ``make images`` built, tagged into containerd under the name the
compiled pipelines carry (``dex_components.COMPONENT_IMAGE``), as a registry would serve it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from dex_components import COMPONENT_IMAGE
from dex_testing.argo_workflows import WorkflowController, executor_image, find_argo_workflows
from dex_testing.crds import run_kubectl
from dex_testing.devcluster.images import ImageSpec, command_image, write_oci_archive
from dex_testing.devcluster.node import ctr
from dex_testing.kfp_backend import (
    DRIVER_IMAGE,
    LAUNCHER_IMAGE,
    NAMESPACE,
    SERVICE_ACCOUNT,
    KFPAssets,
    KFPBackend,
    find_kfp,
)
from dex_testing.lifecycle import Started
from dex_testing.mlmd import MLMDServer
from dexctl.processes import ProcessRecord

log = logging.getLogger(__name__)

# The names and ports KFP 2.17's compiler and launcher dial (backend/src/v2/config/env.go,
# metadata/env.go, objectstore/config.go).
# ml-pipeline: gRPC 8887 (the driver's cache lookups) and HTTP 8888 (the operator's
# DEX_KFP_URL default); metadata-grpc-service: MLMD on 8080; seaweedfs: S3 on 9000.
ML_PIPELINE = "ml-pipeline"
METADATA = "metadata-grpc-service"
OBJECT_STORE = "seaweedfs"
OBJECT_STORE_URL = f"http://{OBJECT_STORE}.{NAMESPACE}.svc.cluster.local:9000"  # from pods
ARTIFACT_SECRET = "mlpipeline-minio-artifact"
RUNNER_ROLE = "dex-pipeline-runner"
# KFP compiles runAsNonRoot into every pod; its own images run as distroless' nonroot user.
NONROOT = "65532"


def kfp_images(assets: KFPAssets) -> list[ImageSpec]:
    """The driver and launcher as images; KFP's Workflows run both by command name (the
    launcher's init container copies it into the component's pod: ``launcher-v2 --copy``)."""
    return [
        command_image(DRIVER_IMAGE, assets.driver, user=NONROOT),
        command_image(LAUNCHER_IMAGE, assets.launcher, user=NONROOT),
    ]


def _host_service(
    name: str, node_ip: str, ports: list[tuple[str, int, int]]
) -> list[dict[str, Any]]:
    """A Service named as KFP's installation names it, each ``(name, port, target)`` backed by
    ``node_ip:target`` (a process on the node)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "ports": [{"name": n, "port": port, "protocol": "TCP"} for n, port, _ in ports]
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-host",
                "namespace": NAMESPACE,
                "labels": {
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": "dex-testing",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}],
            "ports": [{"name": n, "port": target, "protocol": "TCP"} for n, _, target in ports],
        },
    ]


def runner_rbac() -> list[dict[str, Any]]:
    """What a run's pods do with their ServiceAccount (``pipeline-runner``): the driver and
    launcher read the launcher ConfigMap and the artifact Secret and read/patch their pod;
    argoexec's wait container records each step's result (WorkflowTaskResult)."""
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch", "get", "list", "watch"],
        },
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflows"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    meta = {"name": RUNNER_ROLE, "namespace": NAMESPACE}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RUNNER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
        },
    ]  # fmt: skip


class KFPRuntime(Started):
    """The KFP backend, MLMD and Argo's controller for the node cluster ``kubeconfig`` names
    (its node IP ``node_ip``, containerd at ``containerd_socket``); a context manager."""

    def __init__(
        self,
        kubeconfig: Path,
        work: Path,
        *,
        node_ip: str,
        containerd_socket: Path,
        component_image: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.work = Path(work)
        self.node_ip = node_ip
        self.containerd_socket = containerd_socket
        # The component image as containerd holds it (``make images``' name), tagged
        # COMPONENT_IMAGE; None when the node has it under that name already.
        self.component_image = component_image
        self.backend = KFPBackend(kubeconfig, self.work / "kfp", timeout=timeout, host=node_ip)
        self.mlmd = MLMDServer(self.work / "mlmd", host=node_ip, timeout=timeout)
        self.controller = WorkflowController(kubeconfig, self.work / "argo", NAMESPACE)

    @property
    def url(self) -> str:
        return self.backend.url

    def start(self) -> None:
        self._import_images()
        self.backend.start()
        self.mlmd.start()
        self._expose()
        self.controller.start()

    def _import_images(self) -> None:
        images = self.work / "images"
        specs = [*kfp_images(find_kfp()), executor_image(find_argo_workflows())]
        for spec in specs:
            archive = write_oci_archive(spec, images / f"{spec.name.rsplit('/', 1)[-1]}.tar")
            ctr(self.containerd_socket, "images", "import", str(archive))
        if self.component_image is not None:
            ctr(
                self.containerd_socket,
                "images",
                "tag",
                "--force",
                self.component_image,
                COMPONENT_IMAGE,
            )

    def _expose(self) -> None:
        objects = [
            *_host_service(
                ML_PIPELINE,
                self.node_ip,
                [("grpc", 8887, self.backend.grpc_port), ("http", 8888, self.backend.http_port)],
            ),
            *_host_service(METADATA, self.node_ip, [("grpc-api", 8080, self.mlmd.port)]),
            *_host_service(OBJECT_STORE, self.node_ip, [("s3", 9000, self.backend.s3_port)]),
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": ARTIFACT_SECRET, "namespace": NAMESPACE},
                # The object store's keys (KFPBackend's moto takes any).
                "stringData": {"accesskey": "minio", "secretkey": "minio123"},
            },
            *runner_rbac(),
        ]
        run_kubectl(
            self.kubeconfig,
            "apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )  # fmt: skip

    def records(self) -> list[ProcessRecord]:
        return [*self.backend.records(), *self.mlmd.records(), *self.controller.records()]

    def stop(self) -> None:
        self.controller.stop()
        self.mlmd.stop()
        self.backend.stop()
