"""Static checks of what ships: the Dockerfile (no Docker engine here) and the kustomize
layout, security context and RBAC of the operator manifests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dex_testing import SOURCE_ROOT

REPO = SOURCE_ROOT
MANIFESTS = REPO / "manifests"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_dockerfile_installs_only_the_operator_extra_as_non_root() -> None:
    text = (REPO / "operator" / "Dockerfile").read_text()
    installs = [i.strip() for i in re.findall(r"pip install ([^\n\\&]+)", text)]
    # The operator extra's dependencies as uv.lock pins them, then DEX with nothing resolved.
    assert installs == ["--require-hashes -r requirements/operator.txt", "--no-deps ."]
    for heavy in ("mlflow", "feast", "evidently", "kserve", "scikit", "training", "serving"):
        assert heavy not in " ".join(installs)
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["python", "-m", "dex_operator"]' in text


def test_operator_extra_pulls_no_heavy_stack() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = " ".join(extras["operator"]).lower()
    for heavy in ("mlflow", "feast", "evidently", "kserve", "scikit", "pandas"):
        assert heavy not in names


@pytest.mark.parametrize(
    "folder", ["crd", "rbac", "operator", "feast", "mlflow", "monitor", "samples", "default"]
)
def test_each_folder_is_a_kustomization(folder: str) -> None:
    kustomization = yaml.safe_load((MANIFESTS / folder / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MANIFESTS / folder / resource).exists(), resource


def test_operator_deployment_is_locked_down() -> None:
    (deploy,) = load_all(MANIFESTS / "operator" / "deployment.yaml")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "dex-operator"
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def _platform_deployments() -> list[dict[str, Any]]:
    return [
        doc
        for folder in ("operator", "feast", "mlflow", "monitor")
        for path in sorted((MANIFESTS / folder).glob("*.yaml"))
        for doc in load_all(path)
        if doc.get("kind") == "Deployment"
    ]


def test_platform_deployments_are_locked_down_and_probed() -> None:
    deployments = _platform_deployments()
    names = {d["metadata"]["name"] for d in deployments}
    assert names == {"dex-operator", "dex-feast", "dex-feast-redis", "mlflow", "dex-monitor"}
    for deploy in deployments:
        pod = deploy["spec"]["template"]["spec"]
        name = deploy["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        # Only the operator talks to the API server.
        assert pod["automountServiceAccountToken"] is (name == "dex-operator"), name
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = (name, container["name"])
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert {"requests", "limits"} <= container["resources"].keys(), where
        for container in pod["containers"]:
            assert {"livenessProbe", "readinessProbe"} <= container.keys(), where


def test_cluster_role_has_no_wildcards() -> None:
    for path in (MANIFESTS / "rbac").glob("*.yaml"):
        for doc in load_all(path):
            for rule in doc.get("rules", []):
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(key, []), (path.name, rule)
                # It deletes only what it created per version (a version the route left).
                if "delete" in rule["verbs"]:
                    assert rule["resources"] in (["inferenceservices"], ["httproutes"]), rule


def test_samples_validate_against_the_pydantic_models() -> None:
    from dex_operator.crd.models import DexModelSpec, DexPipelineSpec

    for path in (MANIFESTS / "samples").glob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            if doc["kind"] not in ("DexModel", "DexPipeline"):
                continue
            model = DexModelSpec if doc["kind"] == "DexModel" else DexPipelineSpec
            model.model_validate(doc["spec"])


def test_pods_are_only_listed_and_watched() -> None:
    """The serving-pod watch (image pull failures) reads pods and nothing more."""
    (role,) = load_all(MANIFESTS / "rbac" / "cluster_role.yaml")
    rules = [r for r in role["rules"] if "pods" in r["resources"]]
    assert rules == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]


@pytest.mark.parametrize(
    ("imported", "alias"),
    [
        ("localhost/dex/dex-operator:2b5afa8e4d169b82", "localhost/dex/dex-operator:dev"),
        ("localhost:5000/dex/dex-serving:1", "localhost:5000/dex/dex-serving:dev"),
        ("localhost/dex/dex-operator:dev", None),
        ("localhost:5000/dex/dex-serving", None),
        ("localhost/dex/dex-serving@sha256:abc", None),
    ],
)
def test_the_node_tags_imported_images_dev(imported: str, alias: str | None) -> None:
    from dex_testing.devcluster.node import dev_alias

    assert dev_alias(imported) == alias
