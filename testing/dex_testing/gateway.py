"""A real Gateway API data plane for a dev cluster: Traefik (``make gateway``) as a host process.

``with Gateway(kubeconfig, work) as gateway:`` installs the Gateway API standard-channel CRDs
(the version Traefik is built against), a ClusterRole + ServiceAccount for Traefik with a
token from the TokenRequest API, the GatewayClass ``traefik`` (controller
``traefik.io/gateway-controller``) and the Gateway ``dex-system/dex-gateway`` with one HTTP
listener, then runs Traefik with its ``kubernetesgateway`` provider against the API server and
waits until the Gateway is Accepted and Programmed. HTTPRoutes attached to that Gateway
(``parentRefs: [{name: dex-gateway, namespace: dex-system}]``) are served on
:attr:`Gateway.url` (``http://127.0.0.1:<port>``); send ``Host:`` for routes with hostnames.

Traefik listens on 127.0.0.1 only: its web entrypoint, whose port the Gateway's listener
must equal (Traefik maps listeners to entrypoints by port; another port is
``PortUnavailable``), and its own entrypoint for ``/ping``. It never calls out
(no version check, no usage statistics) and has no dashboard (the module's web UI is a
placeholder). Backends are what the Services' EndpointSlices say: on the dev node, pod IPs,
which the host reaches over the pods' bridge. Route weights are exact weighted round-robin.

Traefik writes an HTTPRoute's ``status.parents[].conditions`` (Accepted, ResolvedRefs) with
``observedGeneration`` = the route's ``metadata.generation`` when its provider has built the
configuration for that generation, which the proxy then switches to: measured on the dev
node (tests/integration/node/test_node_gateway.py), the status named a weight patch's
generation 0.005-0.11 s after the patch and the new split served from 0.24-0.34 s; in two
runs of four the 100 requests sent right after the status still saw the old weights. A
generation in the status means "applied within a fraction of a second", not "in force now".
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from dex_testing import SOURCE_ROOT
from dex_testing.devcluster import ClusterState
from dex_testing.devcluster.kubeconfig import service_account_kubeconfig
from dexctl.polling import eventually
from dexctl.processes import Child, free_ports

log = logging.getLogger(__name__)

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "gateway" / "build.sh"
GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
CONTROLLER_NAME = "traefik.io/gateway-controller"
CLASS_NAME = "traefik"
NAMESPACE = "dex-system"
NAME = "dex-gateway"
SERVICE_ACCOUNT = "traefik"
CLUSTER_ROLE = "dex-gateway-traefik"
LISTENER = "web"
TOKEN_SECONDS = 30 * 24 * 3600  # a host process cannot have its token rotated by a kubelet

# Traefik's Gateway provider RBAC (its docs' kubernetes-gateway-rbac.yml), less the pods get
# that only OpenTelemetry attributes need.
RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {
        "apiGroups": [""],
        "resources": ["services", "secrets", "configmaps"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": [GROUP],
        "resources": [
            "gatewayclasses",
            "gateways",
            "httproutes",
            "grpcroutes",
            "tcproutes",
            "tlsroutes",
            "referencegrants",
            "backendtlspolicies",
        ],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": [GROUP],
        "resources": [
            "gatewayclasses/status",
            "gateways/status",
            "httproutes/status",
            "grpcroutes/status",
            "tcproutes/status",
            "tlsroutes/status",
            "referencegrants/status",
            "backendtlspolicies/status",
        ],
        "verbs": ["update"],
    },
]


class MissingGatewayError(RuntimeError):
    """Traefik or the Gateway API CRDs are not built (``make gateway``)."""


def folder() -> Path:
    """The folder tools/gateway/build.sh builds into (it computes it: one definition)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def ensure_built() -> None:
    """Build Traefik and fetch the CRDs if missing (what ``make gateway`` runs)."""
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)


def condition(conditions: list[dict[str, Any]] | None, kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def is_true(conditions: list[dict[str, Any]] | None, kind: str, generation: int) -> bool:
    """Condition ``kind`` is True for ``generation`` (not an older spec)."""
    found = condition(conditions, kind)
    return (
        found is not None
        and found.get("status") == "True"
        and found.get("observedGeneration") == generation
    )


class Gateway:
    """Traefik serving the Gateway ``dex-system/dex-gateway``; a context manager."""

    def __init__(
        self,
        cluster: ClusterState | Path,
        work: Path,
        *,
        namespace: str = NAMESPACE,
        name: str = NAME,
        start_timeout: float = 60.0,
    ) -> None:
        self.kubeconfig = cluster.kubeconfig if isinstance(cluster, ClusterState) else cluster
        self.work = work
        self.namespace = namespace
        self.name = name
        self.start_timeout = start_timeout
        self.port = 0
        self.ping_port = 0
        self.startup_seconds = 0.0
        self._child: Child | None = None
        self._api: Any = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the Gateway is not started")
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -----------------------------------------------------------------------------------

    def start(self) -> Gateway:
        from kubernetes import config

        began = time.monotonic()
        built = folder()
        traefik, crds = built / "traefik", built / "crd"
        if not os.access(traefik, os.X_OK) or not crds.is_dir():
            raise MissingGatewayError(
                f"Traefik and the Gateway API CRDs are not built in {built}; run `make gateway`"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        try:
            self._install_crds(crds)
            endpoint, ca, token = self._credentials()
            self.port, self.ping_port = free_ports(2)
            self._create_gateway()
            self._child = Child(
                "traefik",
                [
                    str(traefik),
                    "--global.checkNewVersion=false",
                    "--global.sendAnonymousUsage=false",
                    "--log.level=INFO",
                    "--log.noColor=true",
                    f"--entryPoints.{LISTENER}.address=127.0.0.1:{self.port}",
                    f"--entryPoints.traefik.address=127.0.0.1:{self.ping_port}",
                    "--ping=true",
                    "--ping.entryPoint=traefik",
                    "--api.dashboard=false",
                    "--providers.providersThrottleDuration=0s",
                    "--providers.kubernetesgateway=true",
                    f"--providers.kubernetesgateway.endpoint={endpoint}",
                    f"--providers.kubernetesgateway.token={token}",
                    f"--providers.kubernetesgateway.certAuthFilePath={ca}",
                    "--providers.kubernetesgateway.statusAddress.ip=127.0.0.1",
                ],
                log=self.work / "traefik.log",
                # KUBECONFIG would take precedence over the endpoint/token/CA flags.
                env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            )
            self._child.wait_ready(self._pings, timeout=self.start_timeout, what="/ping")
            self._child.wait_ready(
                self._programmed, timeout=self.start_timeout, what="Gateway Programmed"
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = round(time.monotonic() - began, 2)
        log.info(
            "Gateway %s/%s at %s in %.1f s",
            self.namespace,
            self.name,
            self.url,
            self.startup_seconds,
        )
        return self

    def stop(self) -> None:
        """Stop Traefik; remove the Gateway, GatewayClass and RBAC it made (CRDs stay)."""
        if self._child is not None:
            self._child.stop()
            self._child = None
        if self._api is not None:
            self._delete_objects()
            self._api.close()
            self._api = None

    # -----------------------------------------------------------------------------------

    def _install_crds(self, crds: Path) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        ext = client.ApiextensionsV1Api(self._api)
        admission = client.AdmissionregistrationV1Api(self._api)
        names = []
        for path in sorted(crds.glob("*.yaml")):
            # 1.2 MB of schemas: libyaml's loader when there, 15x the pure-Python one.
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            for doc in yaml.load_all(path.read_text(), Loader=loader):
                if not doc:
                    continue
                kind = doc["kind"]
                create = {
                    "CustomResourceDefinition": ext.create_custom_resource_definition,
                    # safe-upgrades: refuses experimental-channel CRDs over these.
                    "ValidatingAdmissionPolicy": admission.create_validating_admission_policy,
                    "ValidatingAdmissionPolicyBinding": (
                        admission.create_validating_admission_policy_binding
                    ),
                }.get(kind)
                if create is None:
                    raise ValueError(f"{path}: unexpected {kind} in the Gateway API CRDs")
                try:
                    create(doc)
                except ApiException as exc:
                    if exc.status != 409:  # already installed (a second Gateway, say)
                        raise
                if kind == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])

        def established() -> bool:
            for name in names:
                crd = ext.read_custom_resource_definition(name)
                conditions = (crd.status.conditions or []) if crd.status else []
                if not any(c.type == "Established" and c.status == "True" for c in conditions):
                    return False
            return True

        eventually(established, timeout=self.start_timeout, what="Gateway API CRDs Established")

    def _credentials(self) -> tuple[str, Path, Path]:
        """The API server, its CA and a ServiceAccount token Traefik authenticates with."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        rbac = client.RbacAuthorizationV1Api(self._api)
        try:
            rbac.create_cluster_role({"metadata": {"name": CLUSTER_ROLE}, "rules": RULES})
        except ApiException as exc:
            if exc.status != 409:
                raise
        kubeconfig = service_account_kubeconfig(
            self.kubeconfig,
            namespace=self.namespace,
            name=SERVICE_ACCOUNT,
            out=self.work / "traefik.kubeconfig",
            cluster_role=CLUSTER_ROLE,
            expiration_seconds=TOKEN_SECONDS,
        )
        doc = yaml.safe_load(kubeconfig.read_text())
        cluster = doc["clusters"][0]["cluster"]
        ca = self.work / "ca.crt"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        token = self.work / "traefik.token"
        token.write_text(doc["users"][0]["user"]["token"])
        token.chmod(0o600)
        return str(cluster["server"]), ca, token

    def _objects(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self._api)

    def _create_gateway(self) -> None:
        from kubernetes.client.exceptions import ApiException

        objects = self._objects()
        gateway_class = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GatewayClass",
            "metadata": {"name": CLASS_NAME},
            "spec": {"controllerName": CONTROLLER_NAME},
        }
        gateway = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Gateway",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "gatewayClassName": CLASS_NAME,
                "listeners": [
                    {
                        "name": LISTENER,
                        "protocol": "HTTP",
                        # Must equal the entrypoint's port: Traefik maps listeners by port.
                        "port": self.port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        }
        try:
            objects.create_cluster_custom_object(GROUP, VERSION, "gatewayclasses", gateway_class)
        except ApiException as exc:
            if exc.status != 409:
                raise
        try:
            objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "gateways", gateway
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            # A Gateway left by an earlier run: point its listener at this entrypoint.
            objects.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "gateways", self.name, {"spec": gateway["spec"]}
            )

    def _pings(self) -> bool:
        import urllib.request

        try:
            url = f"http://127.0.0.1:{self.ping_port}/ping"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def _programmed(self) -> bool:
        gateway = self._objects().get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "gateways", self.name
        )
        generation = int(gateway["metadata"]["generation"])
        conditions = gateway.get("status", {}).get("conditions")
        return is_true(conditions, "Accepted", generation) and is_true(
            conditions, "Programmed", generation
        )

    def _delete_objects(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        objects = self._objects()
        rbac = client.RbacAuthorizationV1Api(self._api)
        deletions: list[Callable[[], object]] = [
            lambda: objects.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "gateways", self.name
            ),
            lambda: objects.delete_cluster_custom_object(
                GROUP, VERSION, "gatewayclasses", CLASS_NAME
            ),
            lambda: rbac.delete_cluster_role_binding(
                f"{self.namespace}-{SERVICE_ACCOUNT}-{CLUSTER_ROLE}"
            ),
            lambda: rbac.delete_cluster_role(CLUSTER_ROLE),
        ]
        for delete in deletions:
            try:
                delete()
            except (ApiException, OSError) as exc:  # the API server may already be gone
                status = getattr(exc, "status", None)
                if status != 404:
                    log.debug("Gateway clean-up: %s", exc)
