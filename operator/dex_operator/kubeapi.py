"""A small synchronous Kubernetes API client: JSON requests over HTTPS keep-alive
connections, with the credentials kopf logs in with (``login``).

Why not the official ``kubernetes`` package: importing it costs about 80 MiB of resident
memory (its generated model classes) and over a second, for the few JSON calls the operator
makes; and wherever it is importable kopf imports it too. The operator image does not
install it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

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


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    if info.insecure:  # kubeconfig's insecure-skip-tls-verify
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif info.ca_data:
        context = ssl.create_default_context(cadata=_pem(info.ca_data).decode())
    elif info.ca_path:
        context = ssl.create_default_context(cafile=os.fsdecode(info.ca_path))
    else:
        context = ssl.create_default_context()
    # ssl loads a client certificate from files only. Inline ones are written for the load
    # and no longer: the context holds the key in memory, and a process that is killed
    # (SIGKILL, the OOM killer) leaves no private key behind in /tmp.
    with tempfile.TemporaryDirectory(prefix="dex-operator-") as private:  # 0700
        cert, key = info.certificate_path, info.private_key_path
        if info.certificate_data:
            cert = Path(private) / "client.crt"
            cert.write_bytes(_pem(info.certificate_data))
        if info.private_key_data:
            key = Path(private) / "client.key"
            key.write_bytes(_pem(info.private_key_data))
        if cert:
            context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return context


@dataclass(frozen=True)
class _Endpoint:
    """Where and as whom requests go: one login's worth, replaced whole on a re-login."""

    host: str
    port: int
    prefix: str  # a path the server is mounted under (a proxy's), or ""
    tls: ssl.SSLContext | None  # None: plain HTTP (kubectl proxy)
    headers: dict[str, str]

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.tls is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.tls)


class Client:
    """``request`` returns the decoded JSON body, or raises ``ApiError``. A 401 logs in again
    once (a rotated service-account token) before it is an error.

    One keep-alive connection per thread (the reconciles' pool threads), on the standard
    library's ``http.client``: at 500 DexModels a pooled client (httpx) spent more CPU
    choosing a connection (a lock, and a readability poll of every idle connection, per
    request) than the request itself, on a machine where the API server needs the CPU.
    Transport failures raise ``OSError`` or ``http.client.HTTPException``."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._lock = threading.Lock()
        self._local = threading.local()
        self._endpoint = self._login()

    def _login(self) -> _Endpoint:
        info = login()
        url = urlsplit(info.server)
        headers = {"Accept": "application/json", "User-Agent": "dex-operator"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            basic = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        tls = url.scheme == "https"
        return _Endpoint(
            host=url.hostname or "localhost",
            port=url.port or (443 if tls else 80),
            prefix=url.path.rstrip("/"),
            tls=_ssl_context(info) if tls else None,
            headers=headers,
        )

    def _connection(self, endpoint: _Endpoint) -> http.client.HTTPConnection:
        local = self._local
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is None or local.endpoint is not endpoint:
            if conn is not None:
                conn.close()
            conn = local.conn = endpoint.connect(self._timeout)
            local.endpoint = endpoint
        return conn

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
        for attempt in (1, 2):
            endpoint = self._endpoint
            url = endpoint.prefix + path + (f"?{urlencode(params)}" if params else "")
            headers = endpoint.headers
            if content is not None:
                headers = {**headers, "Content-Type": content_type}
            status, reason, data = self._exchange(endpoint, method, url, content, headers)
            if status == 401 and attempt == 1:
                with self._lock:
                    if self._endpoint is endpoint:
                        self._endpoint = self._login()
                continue
            if status >= 400:
                raise ApiError(status, reason, data.decode(errors="replace"))
            decoded: dict[str, Any] = json.loads(data) if data else {}
            return decoded
        raise AssertionError("unreachable")

    def _exchange(
        self,
        endpoint: _Endpoint,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, str, bytes]:
        for attempt in (1, 2):
            conn = self._connection(endpoint)
            reused = conn.sock is not None
            try:
                conn.request(method, url, body=content, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 1:
                    # The server closed the kept-alive connection while it was idle: send
                    # again, once, on a new one. Should the first have been processed after
                    # all, every write here is conditional (a resourceVersion, a uid, a
                    # name to create) and its replay is refused, not applied twice.
                    continue
                raise
            except (OSError, http.client.HTTPException):
                conn.close()
                raise
            if response.will_close:
                conn.close()
            return response.status, response.reason, data
        raise AssertionError("unreachable")


@cache
def client() -> Client:
    from dex_operator.config import CONFIG

    return Client(timeout=CONFIG.api_timeout)


def custom_path(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    path = f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path
