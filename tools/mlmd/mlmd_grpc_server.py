"""ML Metadata's own store served over gRPC as ``ml_metadata.MetadataStoreService``, the
service the Kubeflow Pipelines v2 driver and launcher call. Run by the python of the venv
``tools/mlmd/install.sh`` makes (``make mlmd``); it imports nothing from DEX.

What this is: MLMD's C++ store, the same library ``metadata_store_server`` links, as PyPI's
``ml-metadata`` wheel ships it (a pybind extension,
``ml_metadata.metadata_store.pywrap.metadata_store_extension.metadata_store``), on SQLite.
That extension exposes one function per RPC taking the store and the serialized request and
returning ``[response bytes, error message bytes, status code]`` (absl/gRPC codes, 0 = OK).
This script is a thin generic layer over it: one unary handler per RPC, raw bytes in and out
(no (de)serialization here: the C++ store parses the request), a non-zero code becomes that
gRPC status with MLMD's message. Calls are serialized on the one store with a lock, as the
C++ server's service implementation does.

Why not the C++ server: its binary is not available here (no Debian package, the PyPI wheel
has no server binary, building it needs Bazel with internet access).

Served: every method of ``MetadataStoreService`` the extension also has (49 of the 52 in
ml-metadata 1.17.1, all unary, including everything the KFP 2.17 driver calls). Not served
(the extension lacks them; gRPC answers UNIMPLEMENTED): ``GetLineageGraph``,
``GetParentContextsByContexts``, ``GetChildrenContextsByContexts``. The standard gRPC health
service is added when ``grpcio-health-checking`` is importable (it is not in the pinned venv).
None of ``metadata_store_server``'s flags exist beyond ``--host``/``--port`` and the SQLite
file (no MySQL/PostgreSQL, TLS, schema migration or channel options).

    python mlmd_grpc_server.py --port 8080 --sqlite /path/mlmd.sqlite [--host 127.0.0.1]

Prints one JSON line when serving (``{"event": "serving", "port": ...}``) and one when
stopped; SIGTERM or SIGINT stops it (exit 0).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from ml_metadata.metadata_store.pywrap.metadata_store_extension import metadata_store as ext
from ml_metadata.proto import metadata_store_pb2, metadata_store_service_pb2

SERVICE = "ml_metadata.MetadataStoreService"
_STATUS = {code.value[0]: code for code in grpc.StatusCode}


def service_methods() -> tuple[list[str], list[str]]:
    """(served, not served): the service's unary methods the extension has, and the rest."""
    service = metadata_store_service_pb2.DESCRIPTOR.services_by_name["MetadataStoreService"]
    served: list[str] = []
    missing: list[str] = []
    for method in service.methods:
        unary = not (method.client_streaming or method.server_streaming)
        (served if unary and hasattr(ext, method.name) else missing).append(method.name)
    return sorted(served), sorted(missing)


def open_store(sqlite: Path) -> Any:
    sqlite.parent.mkdir(parents=True, exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(sqlite)
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    migration = metadata_store_pb2.MigrationOptions()
    return ext.CreateMetadataStore(config.SerializeToString(), migration.SerializeToString())


def handler(store: Any, lock: threading.Lock, name: str) -> Callable[[bytes, Any], bytes]:
    method = getattr(ext, name)

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        with lock:
            response, error, code = method(store, request)
        if code != 0:
            status = _STATUS.get(code, grpc.StatusCode.UNKNOWN)
            context.abort(status, error.decode("utf-8", errors="replace"))
        return bytes(response)

    return call


def add_health(server: grpc.Server) -> bool:
    try:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    except ImportError:
        return False
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return True


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--sqlite", type=Path, required=True, help="database file (created)")
    args = parser.parse_args(argv)

    store = open_store(args.sqlite.resolve())
    lock = threading.Lock()
    served, missing = service_methods()
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(handler(store, lock, name)) for name in served
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        # grpc sets SO_REUSEPORT by default: a second server could bind the same port.
        options=[("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    health = add_health(server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        emit("error", message=f"cannot listen on {args.host}:{args.port}")
        return 1

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    emit(
        "serving",
        host=args.host,
        port=port,
        sqlite=str(args.sqlite.resolve()),
        served=len(served),
        not_served=missing,
        health=health,
    )
    while not stop.wait(1.0):
        pass
    server.stop(grace=5).wait()
    emit("stopped", port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
