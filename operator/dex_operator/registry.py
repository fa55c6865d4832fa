"""Resolve a DexModel's model source to a concrete storage URI through MLflow's REST API.

Plain HTTP on purpose: the operator image must not install mlflow. The three calls are the
registry's documented REST endpoints (API 2.0).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, Field

from dex_operator.crd.models import ModelSource


class RegistryError(RuntimeError):
    """The registry could not resolve the model (unknown name/version/alias, or unreachable)."""


class ResolvedModel(BaseModel):
    version: str = Field(description="Registered model version.")
    storage_uri: str = Field(description="Where KServe downloads the model from.")
    tags: dict[str, str] = Field(default_factory=dict, description="Model version tags.")
    run_id: str | None = Field(default=None, description="Training run.")


class MlflowRegistry:
    def __init__(
        self, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base_url}/api/2.0/mlflow/{path}"
        try:
            resp = self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise RegistryError(f"MLflow unreachable at {self.base_url}: {exc}") from exc
        if resp.status_code != 200:
            try:
                detail = resp.json().get("message", resp.text)
            except ValueError:
                detail = resp.text
            raise RegistryError(f"MLflow {path} {params}: HTTP {resp.status_code}: {detail}")
        body: dict[str, Any] = resp.json()
        return body

    def _version(self, mv: dict[str, Any]) -> ResolvedModel:
        name, version = str(mv["name"]), str(mv["version"])
        download = self._get("model-versions/get-download-uri", {"name": name, "version": version})
        uri = download.get("artifact_uri") or mv.get("source")
        if not uri:
            raise RegistryError(f"{name} v{version} has no artifact location")
        tags = {str(t["key"]): str(t.get("value", "")) for t in mv.get("tags") or []}
        return ResolvedModel(
            version=version, storage_uri=str(uri), tags=tags, run_id=mv.get("run_id")
        )

    def by_version(self, name: str, version: str) -> ResolvedModel:
        body = self._get("model-versions/get", {"name": name, "version": version})
        return self._version(body["model_version"])

    def by_alias(self, name: str, alias: str) -> ResolvedModel:
        body = self._get("registered-models/alias", {"name": name, "alias": alias})
        return self._version(body["model_version"])

    def resolve(self, source: ModelSource) -> ResolvedModel:
        if source.storage_uri:
            raise ValueError("a storageUri source needs no registry")
        if not source.name:
            raise RegistryError("spec.model.name is required for registry lookups")
        if source.version:
            return self.by_version(source.name, source.version)
        if source.alias:
            return self.by_alias(source.name, source.alias)
        raise RegistryError("spec.model needs a version or an alias")
