"""ML Metadata served over gRPC (``dex_testing.mlmd``, ``make mlmd``) answers MLMD's own Python
client as the KFP driver needs: types, an artifact, a ``system.PipelineRun`` context, an
execution with its events, attributions and associations, read back by context and by
execution; the store's errors arrive with their codes; the data outlives a restart on the
same SQLite file. The client runs in the MLMD venv (protobuf 4.25), as a subprocess."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from dex_testing.mlmd import SERVICE, MissingMLMDError, MLMDServer, find_mlmd

pytestmark = [pytest.mark.integration]

RUN = "dex-training-run-1"

# MLMD's own Python client over gRPC (MetadataStoreClientConfig), as KFP's driver talks to
# the store. `write` records a small pipeline run; `read` reads it back; both print JSON.
CLIENT = r"""
import json, sys
from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

host, port, phase, run = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
store = metadata_store.MetadataStore(pb.MetadataStoreClientConfig(host=host, port=port))
seen = {}


def failure(call):
    try:
        call()
    except errors.StatusError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": None}


if phase == "write":
    model_type = pb.ArtifactType(name="system.Model")
    model_type.properties["framework"] = pb.STRING
    model_type_id = store.put_artifact_type(model_type)
    dataset_type_id = store.put_artifact_type(pb.ArtifactType(name="system.Dataset"))
    run_type_id = store.put_context_type(pb.ContextType(name="system.PipelineRun"))
    exec_type_id = store.put_execution_type(pb.ExecutionType(name="system.ContainerExecution"))

    model = pb.Artifact(type_id=model_type_id, uri="s3://mlpipeline/dex/model", name="model")
    model.properties["framework"].string_value = "sklearn"
    model.custom_properties["accuracy"].double_value = 0.91
    model.state = pb.Artifact.LIVE
    dataset = pb.Artifact(type_id=dataset_type_id, uri="s3://mlpipeline/dex/train.parquet")
    (dataset_id,) = store.put_artifacts([dataset])
    (run_id,) = store.put_contexts([pb.Context(type_id=run_type_id, name=run)])

    execution = pb.Execution(type_id=exec_type_id, name="train")
    execution.last_known_state = pb.Execution.COMPLETE
    execution.custom_properties["display_name"].string_value = "train"
    # PutExecution: the execution, its output artifact + event, and its context (attribution
    # of the artifact, association of the execution) in one transaction, as KFP does.
    output = pb.Event(type=pb.Event.OUTPUT)
    output.path.steps.add().key = "model"
    context = pb.Context(id=run_id, type_id=run_type_id, name=run)
    exec_id, (model_id,), _ = store.put_execution(execution, [(model, output)], [context])
    # The input: an event, then its attribution to the run, each on its own.
    store.put_events([pb.Event(artifact_id=dataset_id, execution_id=exec_id, type=pb.Event.INPUT)])
    store.put_attributions_and_associations(
        [pb.Attribution(artifact_id=dataset_id, context_id=run_id)], []
    )
    seen["ids"] = {"execution": exec_id, "model": model_id, "dataset": dataset_id, "run": run_id}
    conflicting = pb.ArtifactType(name="system.Model")
    conflicting.properties["framework"] = pb.INT
    seen["conflicting_type"] = failure(lambda: store.put_artifact_type(conflicting))

found = store.get_context_by_type_and_name("system.PipelineRun", run)
seen["context"] = {"id": found.id, "name": found.name}
artifacts = store.get_artifacts_by_context(found.id)
seen["artifacts"] = sorted(
    [
        {
            "id": a.id,
            "uri": a.uri,
            "name": a.name,
            "framework": a.properties["framework"].string_value,
            "accuracy": a.custom_properties["accuracy"].double_value,
        }
        for a in artifacts
    ],
    key=lambda a: a["uri"],
)
executions = store.get_executions_by_context(found.id)
seen["executions"] = [
    {"id": e.id, "name": e.name, "state": pb.Execution.State.Name(e.last_known_state)}
    for e in executions
]
events = store.get_events_by_execution_ids([e.id for e in executions])
seen["events"] = sorted(
    [
        {"artifact": e.artifact_id, "type": pb.Event.Type.Name(e.type),
         "path": [s.key for s in e.path.steps]}
        for e in events
    ],
    key=lambda e: e["type"],
)
seen["artifact_types"] = sorted(t.name for t in store.get_artifact_types())
seen["missing_context"] = store.get_context_by_type_and_name("system.PipelineRun", "nope") is None
seen["missing_type"] = failure(lambda: store.get_context_type("no.SuchType"))
print(json.dumps(seen))
"""


def client(python: Path, server: MLMDServer, phase: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "-c", CLIENT, server.host, str(server.port), phase, RUN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"client {phase} failed:\n{done.stdout}\n{done.stderr}"
    seen: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return seen


def test_mlmd_records_a_run_as_kfp_does_and_keeps_it_across_a_restart(tmp_path: Path) -> None:
    try:
        assets = find_mlmd()
    except MissingMLMDError as exc:
        pytest.fail(str(exc))  # never a skip: this test exists to run against MLMD's store

    started = time.monotonic()
    with MLMDServer(tmp_path) as server:
        ready = time.monotonic() - started
        serving = server.serving_line()
        assert serving["port"] == server.port
        assert serving["not_served"] == [
            "GetChildrenContextsByContexts",
            "GetLineageGraph",
            "GetParentContextsByContexts",
        ]
        with (
            grpc.insecure_channel(server.address) as channel,
            pytest.raises(grpc.RpcError) as unserved,
        ):
            channel.unary_unary(f"/{SERVICE}/GetLineageGraph")(b"", timeout=5)
        assert unserved.value.code() == grpc.StatusCode.UNIMPLEMENTED

        written = client(assets.python, server, "write")
    print(f"MLMD answered {ready:.2f} s after start")

    ids = written["ids"]
    assert written["context"] == {"id": ids["run"], "name": RUN}
    assert written["artifacts"] == [  # by URI
        {
            "id": ids["model"],
            "uri": "s3://mlpipeline/dex/model",
            "name": "model",
            "framework": "sklearn",
            "accuracy": 0.91,
        },
        {
            "id": ids["dataset"],
            "uri": "s3://mlpipeline/dex/train.parquet",
            "name": "",
            "framework": "",
            "accuracy": 0.0,
        },
    ]
    assert written["executions"] == [{"id": ids["execution"], "name": "train", "state": "COMPLETE"}]
    assert written["events"] == [
        {"artifact": ids["dataset"], "type": "INPUT", "path": []},
        {"artifact": ids["model"], "type": "OUTPUT", "path": ["model"]},
    ]
    assert written["artifact_types"] == ["system.Dataset", "system.Model"]
    assert written["missing_context"] is True
    assert written["missing_type"]["error"] == "NotFoundError", written["missing_type"]
    assert written["conflicting_type"]["error"] == "AlreadyExistsError", written
    assert "framework" in written["conflicting_type"]["message"]

    # A new server on the same SQLite file: everything written is still there.
    assert (tmp_path / "mlmd.sqlite").is_file()
    with MLMDServer(tmp_path) as again:
        read = client(assets.python, again, "read")
    expected = {k: v for k, v in written.items() if k not in ("ids", "conflicting_type")}
    assert read == expected
