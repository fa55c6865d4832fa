"""What a DexPipeline's spec means to KFP, checked before anything is submitted: the pipeline
package (a shipped DEX pipeline or a compiled one), its parameters typed by the package's own
input definitions (an unknown or missing one is refused, naming it), the schedule in KFP's
six-field cron."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from dex_operator.crd.models import EnvVar, PipelineRef


class PipelineSpecError(ValueError):
    """The spec cannot be submitted as it is; the message names the field."""


def load_package(ref: PipelineRef, *, timeout: float = 10.0) -> bytes:
    """The compiled IR YAML: a shipped pipeline (package data of ``dex_pipelines``, read as
    data: the operator does not import the pipelines' code), or ``package``'s path or URL."""
    if ref.name:
        shipped = importlib.resources.files("dex_pipelines") / "compiled" / f"{ref.name}.yaml"
        return shipped.read_bytes()
    assert ref.package is not None  # the CRD's rule: exactly one of name and package
    where = ref.package
    try:
        if where.startswith(("http://", "https://")):
            response = httpx.get(where, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
            return response.content
        return Path(where).read_bytes()
    except (OSError, httpx.HTTPError) as exc:
        raise PipelineSpecError(f"spec.pipeline.package {where}: cannot read it: {exc}") from exc


def _ir(package: bytes) -> dict[str, Any]:
    try:
        docs = [d for d in yaml.safe_load_all(package) if d]
    except yaml.YAMLError as exc:
        raise PipelineSpecError(f"spec.pipeline: not YAML: {exc}") from exc
    # A package may carry a platform spec as a second document; the pipeline spec is first.
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0]:
        raise PipelineSpecError("spec.pipeline: not a compiled KFP pipeline (no root)")
    ir: dict[str, Any] = docs[0]
    return ir


# Per source kind: the platform spec's field, and its entries' object and key fields.
_FROM = {
    "config_map_key_ref": ("configMapAsEnv", "configMapName", "configMapKey"),
    "secret_key_ref": ("secretAsEnv", "secretName", "secretKey"),
}


def with_env(package: bytes, env: list[EnvVar]) -> bytes:
    """``package`` with ``env`` set in every step's container, as KFP's own SDK writes it: a
    literal value in the container's ``env``, a ConfigMap or Secret key in the Kubernetes
    platform spec (``configMapAsEnv``/``secretAsEnv``, the second document), which KFP's driver
    turns into the pod's ``valueFrom``. A variable the package already sets is replaced."""
    if not env:
        return package
    docs = [d for d in yaml.safe_load_all(package) if d]
    ir = _ir(package)
    platform: dict[str, Any] = docs[1] if len(docs) > 1 and isinstance(docs[1], dict) else {}
    configs: dict[str, Any] = (
        platform.setdefault("platforms", {})
        .setdefault("kubernetes", {})
        .setdefault("deploymentSpec", {})
        .setdefault("executors", {})
    )
    names = {e.name for e in env}
    literals = [{"name": e.name, "value": e.value} for e in env if e.value is not None]
    executors: dict[str, Any] = (ir.get("deploymentSpec") or {}).get("executors") or {}
    for executor_name, executor in executors.items():
        container = executor.get("container")
        if container is None:
            continue  # an importer: no container of its own
        kept = [v for v in container.get("env") or [] if v.get("name") not in names]
        container["env"] = kept + literals
        config = configs.setdefault(executor_name, {})
        for kind, (field, object_field, key_field) in _FROM.items():
            entries = [
                entry
                for entry in config.get(field) or []
                if not {m.get("envVar") for m in entry.get("keyToEnv") or []} & names
            ]
            for e in env:
                ref = getattr(e.value_from, kind) if e.value_from is not None else None
                if ref is None:
                    continue
                entry: dict[str, Any] = {
                    object_field: ref.name,
                    "keyToEnv": [{key_field: ref.key, "envVar": e.name}],
                }
                if ref.optional is not None:
                    entry["optional"] = ref.optional
                entries.append(entry)
            config[field] = entries
            if not entries:
                del config[field]
        if not config:
            del configs[executor_name]
    keep_platform = len(docs) > 1 or bool(configs)
    return yaml.safe_dump_all([ir, platform] if keep_platform else [ir], sort_keys=True).encode()


def pipeline_name(package: bytes) -> str:
    name = (_ir(package).get("pipelineInfo") or {}).get("name")
    if not name:
        raise PipelineSpecError("spec.pipeline: the package has no pipelineInfo.name")
    return str(name)


def _typed(name: str, kind: str, text: str) -> Any:
    try:
        if kind == "NUMBER_INTEGER":
            return int(text)
        if kind == "NUMBER_DOUBLE":
            return float(text)
        if kind == "BOOLEAN":
            if text.lower() not in {"true", "false"}:
                raise ValueError("expected true or false")
            return text.lower() == "true"
        if kind in {"LIST", "STRUCT"}:
            return json.loads(text)
    except ValueError as exc:
        raise PipelineSpecError(
            f"spec.parameters.{name}: {text!r} is not a {kind.lower()}: {exc}"
        ) from exc
    return text


def typed_parameters(package: bytes, given: dict[str, str]) -> dict[str, Any]:
    """``given`` (strings, as the CRD holds them) typed by the package's root inputs."""
    ir = _ir(package)
    inputs: dict[str, Any] = ((ir["root"].get("inputDefinitions") or {}).get("parameters")) or {}
    pipeline = (ir.get("pipelineInfo") or {}).get("name", "the pipeline")
    unknown = sorted(set(given) - set(inputs))
    if unknown:
        raise PipelineSpecError(
            f"spec.parameters.{unknown[0]}: not an input of {pipeline} "
            f"(its inputs: {', '.join(sorted(inputs))})"
        )
    missing = sorted(
        n
        for n, d in inputs.items()
        if n not in given and not d.get("isOptional") and "defaultValue" not in d
    )
    if missing:
        raise PipelineSpecError(f"spec.parameters.{missing[0]}: required by {pipeline} and not set")
    return {
        n: _typed(n, str(inputs[n].get("parameterType", "STRING")), v) for n, v in given.items()
    }


# KFP's cron has a leading seconds field (robfig/cron); the macros as cron expressions.
_MACROS = {
    "@hourly": "0 0 * * * *",
    "@daily": "0 0 0 * * *",
    "@weekly": "0 0 0 * * 0",
    "@monthly": "0 0 0 1 * *",
    "@yearly": "0 0 0 1 1 *",
}


def kfp_cron(schedule: str) -> str:
    """A five-field cron (or a macro) as KFP's six fields: at second 0."""
    if schedule in _MACROS:
        return _MACROS[schedule]
    fields = schedule.split()
    if len(fields) != 5:
        raise PipelineSpecError(f"spec.schedule {schedule!r}: expected five cron fields")
    return " ".join(["0", *fields])
