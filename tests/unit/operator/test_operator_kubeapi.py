"""The operator's own Kubernetes API client: how it logs in (in a pod, from a kubeconfig),
that a 401 logs in again once (a rotated token), and that a refusal is an ApiError with the
API server's status and body. Against a loopback HTTP server; the operator's integration
tests run it against a real API server."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from dex_operator import kubeapi
from dex_testing.devcluster.pki import generate_pki


def test_in_a_pod_it_logs_in_as_the_service_account_by_the_services_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text("not read here")
    (tmp_path / "namespace").write_text("dex-system")
    monkeypatch.setattr(kubeapi, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = kubeapi.login()
    assert info.server == "https://10.96.0.1:443"
    assert info.token == "sa-token"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert info.default_namespace == "dex-system"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert kubeapi.login().server == "https://[fd00::1]:443"


class Api(BaseHTTPRequestHandler):
    """Accepts only the current token; answers 404 as the API server does."""

    token = "first"
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        self.seen.append((self.command, self.path, self.headers.get("Content-Type") or ""))
        if self.headers.get("Authorization") != f"Bearer {Api.token}":
            self._send(401, {"kind": "Status", "reason": "Unauthorized"})
        elif self.path.startswith("/missing"):
            self._send(404, {"kind": "Status", "reason": "NotFound", "message": "gone"})
        else:
            self._send(200, {"echo": json.loads(body) if body else None})

    def do_GET(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def _send(self, code: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, f"http://127.0.0.1:{server.server_address[1]}", "first")
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    Api.token, Api.seen = "first", []
    yield path
    server.shutdown()
    thread.join(10)


def write_kubeconfig(path: Path, server: str, token: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "dev",
                "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "dev"}}],
                "clusters": [{"name": "dev", "cluster": {"server": server}}],
                "users": [{"name": "dev", "user": {"token": token}}],
            }
        )
    )


def test_a_401_logs_in_again_once(kubeconfig: Path) -> None:
    client = kubeapi.Client(timeout=5)
    patch = {"metadata": {"resourceVersion": "7"}}
    assert client.request("PATCH", "/x", body=patch, content_type=kubeapi.MERGE_PATCH) == {
        "echo": patch
    }
    # The token rotates: the old one is refused, the client reads its credentials again.
    Api.token = "second"
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    write_kubeconfig(kubeconfig, server, "second")
    assert client.request("GET", "/y") == {"echo": None}
    assert [s[:2] for s in Api.seen] == [("PATCH", "/x"), ("GET", "/y"), ("GET", "/y")]
    assert Api.seen[0][2] == kubeapi.MERGE_PATCH
    # A token that stays refused is an error, not a loop.
    Api.token = "third"
    with pytest.raises(kubeapi.ApiError) as refused:
        client.request("GET", "/z")
    assert refused.value.status == 401


def test_a_refusal_carries_the_api_servers_status_and_body(kubeconfig: Path) -> None:
    client = kubeapi.Client(timeout=5)
    with pytest.raises(kubeapi.ApiError) as missing:
        client.request("GET", "/missing/thing")
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["message"] == "gone"


class WhoAmI(Api):
    """Answers with the common name of the client certificate the TLS handshake verified."""

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = dict(pair[0] for pair in peer["subject"])
        self._send(200, {"cn": subject["commonName"]})


def test_an_inline_client_key_is_used_from_memory_and_left_on_no_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = generate_pki(tmp_path / "pki")
    server = ThreadingHTTPServer(("127.0.0.1", 0), WhoAmI)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca.cert))
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no handshake
    tls.load_cert_chain(str(pki.serving.cert), str(pki.serving.key))
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "current-context": "dev",
                "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "dev"}}],
                "clusters": [
                    {
                        "name": "dev",
                        "cluster": {
                            "server": f"https://127.0.0.1:{server.server_address[1]}",
                            "certificate-authority-data": data(pki.ca.cert),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "dev",
                        "user": {
                            "client-certificate-data": data(pki.admin.cert),
                            "client-key-data": data(pki.admin.key),
                        },
                    }
                ],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        client = kubeapi.Client(timeout=5)
        assert list(scratch.iterdir()) == []  # the key was written for the load only
        assert client.request("GET", "/whoami") == {"cn": "dex-admin"}
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
