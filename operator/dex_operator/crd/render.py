"""Render the pydantic CRD models into CustomResourceDefinition manifests.

pydantic emits JSON Schema (draft 2020-12); Kubernetes wants a *structural* OpenAPI v3.0
subset: no ``$ref``, no ``anyOf`` of types, no ``title``, boolean ``exclusiveMinimum``, and
``type`` on every node. ``to_structural`` does exactly that translation and nothing clever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from dex_operator import GROUP, VERSION
from dex_operator.crd.models import (
    DexModelSpec,
    DexModelStatus,
    DexPipelineSpec,
    DexPipelineStatus,
)

KOPF_STATUS_FIELD = "kopf"
"""kopf keeps handler progress under ``status.kopf`` (see ``dex_operator.handlers``)."""

_DROP = {"title"}
_FORMATS = ("date-time", "int32", "int64", "double")


def to_structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        target = dict(defs[schema["$ref"].split("/")[-1]])
        # The referencing site's description/default beat the referenced class docstring.
        target.update({k: v for k, v in schema.items() if k != "$ref"})
        return to_structural(target, defs)
    if "anyOf" in schema:
        # Optional[X] -> X: absence, not null, is how Kubernetes says "unset".
        variants = [v for v in schema["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express union in a structural schema: {schema}")
        merged = dict(variants[0])
        merged.update({k: v for k, v in schema.items() if k not in ("anyOf", "default")})
        if schema.get("default") is not None:
            merged["default"] = schema["default"]
        return to_structural(merged, defs)

    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: to_structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_structural(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        elif (key == "format" and value not in _FORMATS) or (key == "default" and value is None):
            continue
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out:
        out.setdefault("type", "object")
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return to_structural(model.model_json_schema(by_alias=True, mode="validation"))


def status_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = schema_of(model)
    schema["properties"][KOPF_STATUS_FIELD] = {
        "type": "object",
        "description": "Operator bookkeeping (kopf handler progress); not for users.",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return schema


def _crd(
    *,
    kind: str,
    plural: str,
    short: str,
    spec_model: type[BaseModel],
    status_model: type[BaseModel],
    columns: list[dict[str, Any]],
    description: str,
    rules: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    root_rules = {"x-kubernetes-validations": rules} if rules else {}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "dex"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["dex"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            **root_rules,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "APIVersion of this object.",
                                },
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": {"type": "object"},
                                "spec": schema_of(spec_model),
                                "status": status_schema(status_model),
                            },
                        }
                    },
                }
            ],
        },
    }


def dexmodel_crd() -> dict[str, Any]:
    return _crd(
        kind="DexModel",
        plural="dexmodels",
        short="dm",
        spec_model=DexModelSpec,
        status_model=DexModelStatus,
        description="DexModel serves an MLflow model version through KServe and rolls new "
        "versions out progressively, gated by metric analysis.",
        rules=[
            # KServe refuses InferenceService names not starting with a letter, and each
            # version's ISVC, {name}-v<version>, names Services {isvc}-transformer that must
            # fit a 63-character DNS label (40 leaves room for 10-digit versions).
            {
                "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
                "size(self.metadata.name) <= 40",
                "message": "metadata.name must start with a letter, hold only lower-case "
                "letters, digits and '-', and be at most 40 characters (KServe names "
                "{name}-v<version>-transformer Services after it)",
            }
        ],
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Stable", "type": "string", "jsonPath": ".status.stableVersion"},
            {"name": "Canary", "type": "string", "jsonPath": ".status.canaryVersion"},
            {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


def dexpipeline_crd() -> dict[str, Any]:
    return _crd(
        kind="DexPipeline",
        plural="dexpipelines",
        short="dp",
        spec_model=DexPipelineSpec,
        status_model=DexPipelineStatus,
        description="DexPipeline runs a DEX pipeline on Kubeflow Pipelines on a schedule or "
        "when a DexModel drifts.",
        columns=[
            {"name": "Pipeline", "type": "string", "jsonPath": ".spec.pipeline.name"},
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
            {"name": "Last Run", "type": "string", "jsonPath": ".status.lastRun.state"},
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


HEADER = (
    "# Generated by `python -m dex_operator.crd` from dex_operator/crd/models.py. Do not edit.\n"
)

FILES = {
    f"{GROUP}_dexmodels.yaml": dexmodel_crd,
    f"{GROUP}_dexpipelines.yaml": dexpipeline_crd,
}


def render_all() -> dict[str, str]:
    """File name -> YAML text, including the kustomization listing them."""
    out = {
        name: HEADER + yaml.safe_dump(build(), sort_keys=False, width=100)
        for name, build in FILES.items()
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(FILES),
    }
    out["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return out


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def stale_files(directory: Path) -> list[str]:
    """Names of files in ``directory`` that differ from a fresh render."""
    return [
        name
        for name, text in render_all().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
