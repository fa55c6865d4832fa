"""The Kubeflow Pipelines v2beta1 REST calls a DexPipeline makes, each safe to repeat.

A pipeline package becomes a pipeline version named by its content hash, uploaded once: a
second upload (this operator restarted, two DexPipelines sharing a pipeline, a 409 because
another writer won) finds the version already there. Runs and recurring runs carry a
display name the operator derives (a run key), and are looked up by it before being created,
so a retry after KFP was unreachable never makes a second one.

KFP's list filters are a JSON-encoded ``Filter`` (``predicates`` of key/operation/value).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

log = logging.getLogger("dex_operator.kfp")

API = "/apis/v2beta1"


class KfpError(RuntimeError):
    """KFP answered with an error (``status``) or not at all (``status`` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KfpUnreachableError(KfpError):
    """No answer: connection refused, DNS, timeout."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Run(_Model):
    run_id: str
    display_name: str = ""
    state: str = ""
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    finished_at: datetime | None = None
    recurring_run_id: str | None = None
    experiment_id: str | None = None


class RecurringRun(_Model):
    recurring_run_id: str
    display_name: str = ""
    status: str = ""  # ENABLED / DISABLED
    description: str = ""


@dataclass(frozen=True)
class VersionRef:
    pipeline_id: str
    pipeline_version_id: str
    name: str

    def reference(self) -> dict[str, str]:
        return {"pipeline_id": self.pipeline_id, "pipeline_version_id": self.pipeline_version_id}


def content_version(pipeline: str, package: bytes) -> str:
    """The version name of ``package``: its pipeline's name and the first 12 hex digits of
    its SHA-256, so the same content is one version however often it is uploaded."""
    return f"{pipeline}-{hashlib.sha256(package).hexdigest()[:12]}"


def equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"key": key, "operation": "EQUALS", "string_value": value}]})


class KfpClient:
    def __init__(self, endpoint: str, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.http = httpx.Client(base_url=self.endpoint, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> KfpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, f"{API}{path}", **kwargs)
        except httpx.TransportError as exc:
            raise KfpUnreachableError(
                f"KFP at {self.endpoint} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise KfpError(
                f"KFP {method} {path}: {response.status_code} {_message(response)}",
                response.status_code,
            )
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    def _first(
        self, path: str, field: str, key: str, value: str, **params: str
    ) -> dict[str, Any] | None:
        """The first item of a list call filtered on ``key == value``; ``field`` names the
        list in the answer (the recurring-run list answers in camelCase)."""
        listed = self._call(
            "GET", path, params={**params, "filter": equals(key, value), "page_size": 1}
        )
        camel = field.split("_")[0] + "".join(w.title() for w in field.split("_")[1:])
        found = listed.get(field) or listed.get(camel) or []
        return dict(found[0]) if found else None

    # --- pipelines and versions --------------------------------------------------------------
    def pipeline_id(self, name: str) -> str | None:
        try:
            return str(self._call("GET", f"/pipelines/names/{name}")["pipeline_id"])
        except KfpError as exc:
            if exc.status == 404:
                return None
            raise

    def _version(self, pipeline_id: str, name: str) -> str | None:
        found = self._first(f"/pipelines/{pipeline_id}/versions", "pipeline_versions", "name", name)
        return str(found["pipeline_version_id"]) if found else None

    def ensure_version(self, pipeline: str, package: bytes) -> VersionRef:
        """``package`` as a version of the pipeline ``pipeline`` (both made if missing)."""
        version = content_version(pipeline, package)
        pipeline_id = self.pipeline_id(pipeline)
        if pipeline_id is None:
            try:
                # The pipeline alone: KFP's upload endpoint would also make a first version
                # named like the pipeline (no content hash), which the KFP UI can show as the
                # pipeline's newest version next to the one DEX runs.
                created = self._call(
                    "POST", "/pipelines", json={"name": pipeline, "display_name": pipeline}
                )
                pipeline_id = str(created["pipeline_id"])
            except KfpError as exc:
                if exc.status != 409:
                    raise
                pipeline_id = self.pipeline_id(pipeline)  # another writer won
                if pipeline_id is None:
                    raise
        if found := self._version(pipeline_id, version):
            return VersionRef(pipeline_id, found, version)
        try:
            made = self._upload(
                "/pipelines/upload_version",
                {"pipelineid": pipeline_id, "name": version},
                package,
            )
            return VersionRef(pipeline_id, str(made["pipeline_version_id"]), version)
        except KfpError as exc:
            if exc.status != 409:
                raise
        found = self._version(pipeline_id, version)
        if found is None:
            raise KfpError(f"KFP refused version {version} as a duplicate but does not list it")
        return VersionRef(pipeline_id, found, version)

    def _upload(self, path: str, params: dict[str, str], package: bytes) -> dict[str, Any]:
        files = {"uploadfile": ("pipeline.yaml", package, "application/x-yaml")}
        return self._call("POST", path, params=params, files=files)

    # --- experiments -----------------------------------------------------------------------
    def ensure_experiment(self, name: str) -> str:
        def find() -> str | None:
            found = self._first("/experiments", "experiments", "display_name", name)
            return str(found["experiment_id"]) if found else None

        if existing := find():
            return existing
        try:
            return str(
                self._call("POST", "/experiments", json={"display_name": name})["experiment_id"]
            )
        except KfpError as exc:
            if exc.status != 409 or (existing := find()) is None:
                raise
            return existing

    # --- runs --------------------------------------------------------------------------------
    def runs(self, experiment_id: str, *, limit: int = 50) -> list[Run]:
        """The experiment's runs, newest first."""
        listed = self._call(
            "GET",
            "/runs",
            params={
                "experiment_id": experiment_id,
                "page_size": limit,
                "sort_by": "created_at desc",
            },
        )
        return [Run.model_validate(r) for r in listed.get("runs") or []]

    def find_run(self, experiment_id: str, display_name: str) -> Run | None:
        found = self._first(
            "/runs", "runs", "display_name", display_name, experiment_id=experiment_id
        )
        return Run.model_validate(found) if found else None

    def ensure_run(
        self,
        *,
        experiment_id: str,
        version: VersionRef,
        display_name: str,
        parameters: dict[str, Any],
        description: str,
    ) -> tuple[Run, bool]:
        """The run named ``display_name`` (the run key), created if there is none; and
        whether this call created it."""
        if existing := self.find_run(experiment_id, display_name):
            return existing, False
        body = {
            "display_name": display_name,
            "description": description,
            "experiment_id": experiment_id,
            "pipeline_version_reference": version.reference(),
            "runtime_config": {"parameters": parameters},
        }
        return Run.model_validate(self._call("POST", "/runs", json=body)), True

    # --- recurring runs ----------------------------------------------------------------------
    def find_recurring_run(self, experiment_id: str, display_name: str) -> RecurringRun | None:
        found = self._first(
            "/recurringruns",
            "recurring_runs",
            "display_name",
            display_name,
            experiment_id=experiment_id,
        )
        return RecurringRun.model_validate(found) if found else None

    def create_recurring_run(
        self,
        *,
        experiment_id: str,
        version: VersionRef,
        display_name: str,
        description: str,
        cron: str,
        parameters: dict[str, Any],
        enabled: bool,
    ) -> RecurringRun:
        body = {
            "display_name": display_name,
            "description": description,
            "experiment_id": experiment_id,
            "pipeline_version_reference": version.reference(),
            "runtime_config": {"parameters": parameters},
            "trigger": {"cron_schedule": {"cron": cron}},
            "mode": "ENABLE" if enabled else "DISABLE",
            "max_concurrency": "1",
            "no_catchup": True,
        }
        return RecurringRun.model_validate(self._call("POST", "/recurringruns", json=body))

    def set_recurring_run_enabled(self, recurring_run_id: str, enabled: bool) -> None:
        action = "enable" if enabled else "disable"
        self._call("POST", f"/recurringruns/{recurring_run_id}:{action}")

    def delete_recurring_run(self, recurring_run_id: str) -> None:
        try:
            self._call("DELETE", f"/recurringruns/{recurring_run_id}")
        except KfpError as exc:
            if exc.status != 404:
                raise


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:500]
    return str(body)[:500]
