"""A small synchronous Kubernetes API client: JSON requests over one pooled HTTPS client
(httpx), with the credentials kopf logs in with (``login``).

Why not the official ``kubernetes`` package: importing it costs about 80 MiB of resident
memory (its generated model classes) and over a second, for the few JSON calls the operator
makes; and wherever it is importable kopf imports it too. The operator image does not
install it.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import kopf

MERGE_PATCH = "application/merge-patch+json"
# client-go's in-cluster config: the API server by the Service's address the kubelet puts
# in every pod's environment (no DNS needed), the service account's token and CA.
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(Exception):
    """The API server refused a request: its HTTP status, reason and the Status body."""

    def __init__(self, status: int, reason: str = "", body: str = "") -> None:
        super().__init__(f"({status}) {reason}")
        self.status, self.reason, self.body = status, reason, body


def login() -> kopf.ConnectionInfo:
    """In a pod: the service account (token re-read at each login: the kubelet rotates it);
    elsewhere: the current kubeconfig context. kopf's watches use the same (``handlers``)."""
    token = SERVICE_ACCOUNT / "token"
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if host and port and token.exists():
        namespace = SERVICE_ACCOUNT / "namespace"
        return kopf.ConnectionInfo(
            server=f"https://{f'[{host}]' if ':' in host else host}:{port}",
            ca_path=str(SERVICE_ACCOUNT / "ca.crt"),
            token=token.read_text().strip(),
            default_namespace=namespace.read_text().strip() if namespace.exists() else None,
        )
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    if info is None:
        raise kopf.LoginError("no service account and no kubeconfig to log in with")
    return info


def _pem(value: str | bytes) -> bytes:
    """kubeconfig's *-data fields are base64 of the PEM."""
    return base64.b64decode(value)


def _ssl_context(info: kopf.ConnectionInfo, secrets: Path) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    if info.ca_data:
        context = ssl.create_default_context(cadata=_pem(info.ca_data).decode())
    elif info.ca_path:
        context = ssl.create_default_context(cafile=os.fsdecode(info.ca_path))
    else:
        context = ssl.create_default_context()
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data:  # ssl loads a client certificate from files only
        cert = secrets / "client.crt"
        cert.write_bytes(_pem(info.certificate_data))
    if info.private_key_data:
        key = secrets / "client.key"
        key.write_bytes(_pem(info.private_key_data))
    if cert:
        context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return context


class Client:
    """``request`` returns the decoded JSON body, or raises ``ApiError``. A 401 logs in again
    once (a rotated service-account token) before it is an error."""

    def __init__(self, pool_size: int, timeout: float) -> None:
        self._pool_size, self._timeout = pool_size, timeout
        self._lock = threading.Lock()
        # Private (0700) directory for a client key kubeconfig carries inline; gone at exit.
        self._secrets = tempfile.TemporaryDirectory(prefix="dex-operator-")
        self._http = self._connect()

    def _connect(self) -> httpx.Client:
        info = login()
        headers = {"Accept": "application/json", "User-Agent": "dex-operator"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = (info.username, info.password) if info.username and info.password else None
        return httpx.Client(
            base_url=info.server,
            headers=headers,
            auth=auth,
            verify=_ssl_context(info, Path(self._secrets.name)),
            timeout=self._timeout,
            trust_env=False,
            limits=httpx.Limits(
                max_connections=self._pool_size, max_keepalive_connections=self._pool_size
            ),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else None
        for attempt in (1, 2):
            http = self._http
            response = http.request(method, path, params=params, content=content, headers=headers)
            if response.status_code == 401 and attempt == 1:
                with self._lock:
                    if self._http is http:
                        self._http = self._connect()
                continue
            if response.is_error:
                raise ApiError(response.status_code, response.reason_phrase, response.text)
            decoded: dict[str, Any] = response.json()
            return decoded
        raise AssertionError("unreachable")


@cache
def client() -> Client:
    from dex_operator.config import CONFIG

    # One pooled connection per worker thread.
    return Client(pool_size=CONFIG.worker_limit, timeout=CONFIG.api_timeout)


def custom_path(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    path = f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path
