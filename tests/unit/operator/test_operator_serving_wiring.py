"""The containers the operator renders are parsed by the serving CLI's own parser
(``python -m dex_serving.run``, serving/Dockerfile's entrypoint): a renamed or removed flag on
either side fails here, not in a pod's CrashLoopBackOff."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dex_operator import isvc
from dex_operator.crd.models import DexModelSpec
from dex_operator.rollout import Plan, Target
from dex_serving.run import settings_from
from dex_serving.settings import PredictorSettings, TransformerSettings
from dex_testing import SOURCE_ROOT

REPO = SOURCE_ROOT
ENDPOINTS = isvc.Endpoints(
    tracking_uri="http://mlflow.dex.svc:5000",
    feast_registry_server="dex-feast.dex-system:6570",
    feast_feature_server="http://dex-feast.dex-system:6566",
)
V1, V2 = Target("s3://m/1", "1"), Target("s3://m/2", "2")


def spec(protocol: str) -> DexModelSpec:
    return DexModelSpec.model_validate(
        {
            "model": {"name": "churn-classifier", "version": "2"},
            "features": {"featureService": "churn_v1", "entityKey": "customer_id"},
            "serving": {"protocol": protocol, "logger": {"url": "http://dex-monitor.dex:8082"}},
        }
    )


def containers(out: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("predictor", out["predictor"]["containers"][0]),
        ("transformer", out["transformer"]["containers"][0]),
    ]


def test_serving_image_runs_the_cli_and_holds_the_feature_repo() -> None:
    dockerfile = (REPO / "serving" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "dex_serving.run"]' in dockerfile
    assert re.search(rf"^COPY feature_repo {isvc.FEATURE_REPO}$", dockerfile, flags=re.M)


@pytest.mark.parametrize("mode", ["Knative", "Standard"])
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_rendered_args_parse_with_the_serving_cli(mode: isvc.Mode, protocol: str) -> None:
    out = isvc.render_spec(
        spec(protocol), Plan(V1, V2, 10), mode, "churn", "ns", ENDPOINTS, target=V2
    )
    own = "churn" if mode == "Knative" else "churn-v2"
    roles = []
    for role, container in containers(out):
        settings = settings_from(container["args"])
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PROTOCOL"] == protocol
        assert (settings.host, settings.http_port) == ("0.0.0.0", isvc.SERVING_PORT)
        assert [p["containerPort"] for p in container["ports"]] == [settings.http_port]
        assert settings.tracking_uri == ENDPOINTS.tracking_uri
        assert settings.model.startswith("models:/churn-classifier/")
        if role == "transformer":
            assert isinstance(settings, TransformerSettings)
            assert settings.served_name == "churn"
            assert str(settings.feature_repo) == isvc.FEATURE_REPO
            # In a pod the repository has no stores of its own: the platform's servers.
            assert settings.feast_registry_server == ENDPOINTS.feast_registry_server
            assert settings.feast_feature_server == ENDPOINTS.feast_feature_server
            # Readiness through the predictor: KServe's health route on the serving port.
            probe = container["readinessProbe"]["httpGet"]
            assert (probe["path"], probe["port"]) == ("/v2/health/ready", settings.http_port)
            assert settings.predictor_host == f"{own}-predictor.ns"
            assert settings.predictor_protocol == protocol
            assert settings.monitor_url == "http://dex-monitor.dex:8082"
            # The spool lives on the volume the transformer mounts.
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert str(settings.event_spool) in mounts
            assert settings.event_spool_bytes == isvc.EVENT_SPOOL_BYTES
        else:
            assert isinstance(settings, PredictorSettings)
            assert settings.served_name == "churn"
        roles.append(role)
    assert roles == ["predictor", "transformer"]


def kserve_transformer_args(args: list[str], name: str, namespace: str) -> list[str]:
    """What KServe's CustomTransformer.GetContainer appends to a transformer's args (v0.15+,
    pkg/apis/serving/v1beta1/transformer_custom.go): each flag unless an arg starts with it."""
    out = list(args)
    for flag, value in (
        ("--model_name", name),
        ("--predictor_host", f"{name}-predictor.{namespace}"),
        ("--http_port", "8080"),
    ):
        if not any(a.startswith(flag) for a in out):
            out += [flag, value]
    return out


def test_transformer_args_survive_kserve_defaulting() -> None:
    out = isvc.render_spec(spec("v2"), Plan(V1), "Standard", "churn", "ns", ENDPOINTS)
    args = out["transformer"]["containers"][0]["args"]
    # KServe would append its own for the InferenceService churn-v1; ours already hold them.
    assert kserve_transformer_args(args, "churn-v1", "ns") == args
    settings = settings_from(args)
    assert isinstance(settings, TransformerSettings)
    assert settings.served_name == "churn"
    assert settings.predictor_host == "churn-v1-predictor.ns"
    assert settings.http_port == isvc.SERVING_PORT


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_a_predictor_reading_features_parses_as_the_one_hop_server(protocol: str) -> None:
    s = spec(protocol)
    assert s.features is not None
    s.features.component = "predictor"
    out = isvc.render_spec(s, Plan(V1), "Standard", "churn", "ns", ENDPOINTS)
    assert "transformer" not in out
    (container,) = out["predictor"]["containers"]
    settings = settings_from(container["args"])
    assert isinstance(settings, TransformerSettings)
    # No predictor host: it loads the model and predicts in its own process.
    assert settings.predictor_host is None
    assert settings.served_name == "churn"
    assert (settings.host, settings.http_port) == ("0.0.0.0", isvc.SERVING_PORT)
    assert settings.feast_registry_server == ENDPOINTS.feast_registry_server
    assert settings.feast_feature_server == ENDPOINTS.feast_feature_server
    assert settings.monitor_url == "http://dex-monitor.dex:8082"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.event_spool) in mounts
