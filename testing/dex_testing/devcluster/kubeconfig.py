"""Kubeconfig files: the admin one for a started control plane, and per-ServiceAccount ones.

Credentials are embedded (``*-data``) so a kubeconfig works from any working directory and
can be handed to kubectl, the kubernetes client, kopf or a subprocess unchanged.
"""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path
from typing import Any

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _document(
    server: str, ca_data: str, user: str, credentials: dict[str, str], context: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def write_cert_kubeconfig(
    path: Path, *, server: str, ca: Path, cert: Path, key: Path, user: str, context: str
) -> Path:
    credentials = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    return _write(path, _document(server, _b64(ca), user, credentials, context))


def service_account_kubeconfig(
    admin_kubeconfig: Path,
    *,
    namespace: str,
    name: str,
    out: Path,
    cluster_role: str | None = None,
    expiration_seconds: int = 3600,
) -> Path:
    """Create ServiceAccount ``namespace/name`` if needed and write a kubeconfig that acts as it.

    The token comes from the TokenRequest API (bound, expiring; what kubelets mount), so
    requests made with ``out`` are authorized by RBAC exactly as the operator's pod would be.
    With ``cluster_role``, a ClusterRoleBinding ``<namespace>-<name>-<cluster_role>`` grants
    it; the API server's RBAC cache takes a moment to see new bindings, so callers that
    expect the grant should poll.
    """
    from kubernetes import client, config  # heavy; only the tests and operator need it
    from kubernetes.client.exceptions import ApiException

    api_client = config.new_client_from_config(config_file=str(admin_kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        with contextlib.suppress(ApiException):
            core.create_namespace({"metadata": {"name": namespace}})
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        if cluster_role is not None:
            binding = {
                "metadata": {"name": f"{namespace}-{name}-{cluster_role}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }
            try:
                client.RbacAuthorizationV1Api(api_client).create_cluster_role_binding(binding)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        token = core.create_namespaced_service_account_token(
            name, namespace, {"spec": {"expirationSeconds": expiration_seconds}}
        ).status.token
        conf = api_client.configuration
        ca_data = _b64(Path(conf.ssl_ca_cert)) if conf.ssl_ca_cert else ""
    finally:
        api_client.close()
    user = f"system:serviceaccount:{namespace}:{name}"
    return _write(out, _document(conf.host, ca_data, user, {"token": token}, f"{namespace}-{name}"))
