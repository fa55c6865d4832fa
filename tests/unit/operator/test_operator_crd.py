"""The CRD YAML is generated from the pydantic models; these tests keep it current and
structural (a schema Kubernetes accepts and `kubectl explain` reads)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dex_operator.crd.models import DexModelSpec
from dex_operator.crd.render import dexmodel_crd, dexpipeline_crd, render_all, stale_files
from dex_testing import SOURCE_ROOT

CRD_DIR = SOURCE_ROOT / "manifests" / "crd"


def test_manifests_are_current() -> None:
    stale = stale_files(CRD_DIR)
    assert not stale, f"{stale} out of date: run `python -m dex_operator.crd`"


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        found += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("crd", [dexmodel_crd(), dexpipeline_crd()], ids=["dm", "dp"])
def test_schema_is_structural_and_documented(crd: dict[str, Any]) -> None:
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(root, ""):
        assert not {"$ref", "anyOf", "title"} & node.keys(), path
        assert "type" in node, f"{path} has no type"
        is_item = path.endswith(("[]", "{}"))
        if path and not is_item and path != ".metadata":
            assert node.get("description"), f"{path} has no description"
        if node.get("exclusiveMinimum") is not None:
            assert isinstance(node["exclusiveMinimum"], bool), path


def test_dexmodel_crd_shape() -> None:
    crd = dexmodel_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["dm"]
    assert names["categories"] == ["dex"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Stable",
        "Canary",
        "Weight",
        "Ready",
        "Age",
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rollout = spec["properties"]["rollout"]
    assert rollout["default"] == {}
    assert rollout["properties"]["steps"]["default"] == [10, 25, 50]
    assert rollout["properties"]["steps"]["items"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
    }
    rules = [r["rule"] for r in spec["properties"]["model"]["x-kubernetes-validations"]]
    assert any("storageUri" in r and "size() == 1" in r for r in rules)
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["kopf"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_dexpipeline_short_name() -> None:
    assert dexpipeline_crd()["spec"]["names"]["shortNames"] == ["dp"]


def test_rendered_yaml_parses_and_has_kustomization() -> None:
    files = render_all()
    kustomization = yaml.safe_load(files["kustomization.yaml"])
    assert sorted(kustomization["resources"]) == sorted(
        n for n in files if n != "kustomization.yaml"
    )
    for name in kustomization["resources"]:
        assert yaml.safe_load(files[name])["kind"] == "CustomResourceDefinition"


def test_spec_model_applies_same_defaults_as_crd() -> None:
    spec = DexModelSpec.model_validate({"model": {"name": "m", "version": "1"}})
    assert spec.rollout.steps == [10, 25, 50]
    assert spec.rollout.interval == "1m"
    assert spec.serving.protocol == "v2"
    assert spec.model.format == "sklearn"
