"""Idle keep-alive connections: a serving process holds them as long as it is told.

A Gateway reuses its idle connections to a pod; if the pod closes one as the Gateway sends a
request on it, the client gets a 502 (a POST is not retried). So the servers must outlast the
proxy's idle timeout: ``--timeout-keep-alive``, by default longer than the Gateways DEX meets.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dex_serving.settings import PredictorSettings
from dex_testing.serving_world import World
from dexctl.local_serving import ServingURLs
from dexctl.polling import eventually
from dexctl.processes import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="serving")]

# Traefik's default idle timeout for connections to backends (serversTransport
# forwardingTimeouts.idleConnTimeout): the Gateway of DEX's clusters.
TRAEFIK_IDLE_CONN_TIMEOUT_S = 90


def _connection(base_url: str, path: str) -> http.client.HTTPConnection:
    """A kept-alive connection that has served one request."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert not response.will_close
    return conn


def _closed_by_server(conn: http.client.HTTPConnection) -> bool:
    sock = conn.sock
    assert isinstance(sock, socket.socket)
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""


@pytest.fixture
def short_lived(world: World, stack: ServingURLs) -> Iterator[str]:
    """A predictor of the same model that holds idle connections for one second."""
    (port,) = free_ports(1)
    env = {
        **os.environ,
        **world.env,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    command = [
        sys.executable, "-m", "dex_serving.run", "predictor",
        "--model", world.model, "--tracking-uri", world.tracking_uri,
        "--served-name", stack.model_name, "--port", str(port), "--timeout-keep-alive", "1",
    ]  # fmt: skip
    log = (world.root / "keepalive-predictor.log").open("w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, (world.root / "keepalive-predictor.log").read_text()
            try:
                return _connection(url, f"/v2/models/{stack.model_name}/ready") is not None
            except (OSError, http.client.HTTPException):
                return False

        eventually(ready, timeout=120, interval=0.2, what="the one-second predictor")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_idle_connections_are_held_as_long_as_configured(
    stack: ServingURLs, short_lived: str
) -> None:
    assert PredictorSettings.model_fields["timeout_keep_alive"].default > (
        TRAEFIK_IDLE_CONN_TIMEOUT_S
    )
    path = f"/v2/models/{stack.model_name}/ready"
    held = _connection(stack.predictor, path)  # the default
    dropped = _connection(short_lived, path)
    sock = held.sock

    eventually(
        lambda: _closed_by_server(dropped),
        timeout=30,
        interval=0.1,
        what="the one-second server to close its idle connection",
    )
    # Same idle time on the default server: its connection is open and still serves.
    assert not _closed_by_server(held)
    held.request("GET", path)
    response = held.getresponse()
    response.read()
    assert response.status == 200
    assert held.sock is sock, "the default server's connection was re-opened"
    held.close()
    dropped.close()
