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


@pytest.mark.parametrize("folder", ["crd", "rbac", "operator", "samples", "default"])
def test_each_folder_is_a_kustomization(folder: str) -> None:
    kustomization = yaml.safe_load((MANIFESTS / folder / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MANIFESTS / folder / resource).exists(), resource


def test_deployment_is_locked_down() -> None:
    (deploy,) = load_all(MANIFESTS / "operator" / "deployment.yaml")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "dex-operator"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"requests", "limits"} <= container["resources"].keys()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "readinessProbe" in container


def test_cluster_role_has_no_wildcards() -> None:
    for path in (MANIFESTS / "rbac").glob("*.yaml"):
        for doc in load_all(path):
            for rule in doc.get("rules", []):
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(key, []), (path.name, rule)
                assert "delete" not in rule["verbs"]


def test_samples_validate_against_the_pydantic_models() -> None:
    from dex_operator.crd.models import DexModelSpec, DexPipelineSpec

    for path in (MANIFESTS / "samples").glob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            model = DexModelSpec if doc["kind"] == "DexModel" else DexPipelineSpec
            model.model_validate(doc["spec"])
