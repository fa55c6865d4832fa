"""Faults between a client and a real server, for crash-safety tests.

:class:`CrashAfterWrite` is an HTTP reverse proxy on 127.0.0.1 in front of a real server. The
first request that matches is passed on and answered by the server; then ``crash`` runs (a
test SIGKILLs the server there) and the client's connection is closed without the answer.
The write happened and the client cannot know it did: the moment a retrying client makes a
duplicate unless it finds what it wrote. Every other request is passed through; while the
server is down the proxy closes connections as a dead server would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

from dexctl.processes import free_ports

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself.
_SKIP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


class CrashAfterWrite:
    """Proxy ``upstream`` at :attr:`url`; crash it after it answers the first ``method``
    request whose path (without the query) ends with ``path_suffix``; a context manager."""

    def __init__(
        self, upstream: str, *, method: str, path_suffix: str, crash: Callable[[], None]
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.method = method
        self.path_suffix = path_suffix
        self.crash = crash
        self.crashed = threading.Event()
        self.lost_answer: bytes = b""  # what the client never received
        (self.port,) = free_ports(1)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                proxy._forward(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CrashAfterWrite:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _SKIP}
        try:
            answer = self._client.request(
                handler.command, self.upstream + handler.path, headers=headers, content=body
            )
        except httpx.TransportError:
            handler.close_connection = True  # the server is down: so is its address
            return
        with self._lock:
            matches = (
                not self.crashed.is_set()
                and handler.command == self.method
                and handler.path.split("?", 1)[0].endswith(self.path_suffix)
            )
            if matches:
                self.lost_answer = answer.content
                self.crash()
                self.crashed.set()
        if matches:
            handler.close_connection = True
            return
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in _SKIP and key.lower() != "content-encoding":
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)
