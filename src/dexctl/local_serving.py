"""Predictor, transformer and monitor as three local processes, for ``dexctl serve``, the demo
and the tests. With ``feature_component="predictor"`` (a DexModel's ``spec.features.component``)
one process reads the features and predicts: no transformer hop.

    with LocalServing(LocalServingConfig(model="models:/churn-classifier@champion")) as urls:
        httpx.post(urls.predict_url, json={"instances": [{"customer_id": 1001}]})

Each child's output is prefixed with its role (``[predictor] ...``) and written to one sink
(stderr by default), so the interleaved logs stay readable.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import httpx
from pydantic import BaseModel, Field

from dex_serving.settings import DriftSettings, to_args
from dexctl.polling import eventually
from dexctl.processes import Child, free_ports


class LocalServingConfig(BaseModel):
    model: str = "models:/churn-classifier@champion"
    tracking_uri: str | None = None
    registry_uri: str | None = None
    feature_repo: Path
    state_dir: Path = Field(description="Monitor database, reports, logs.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment (e.g. the Feast store paths)."
    )
    served_name: str | None = Field(
        default=None,
        description="Name in the URLs and on inference events (KServe's model_name; in a "
        "cluster the InferenceService's); None: the registered model's.",
    )
    predictor_protocol: Literal["v1", "v2"] = "v1"
    feature_component: Literal["transformer", "predictor"] = Field(
        default="transformer",
        description="Which server reads the features: a transformer in front of the "
        "predictor, or the predictor itself (one process, one hop).",
    )
    monitor: bool = True
    monitor_url: str | None = Field(
        default=None,
        description="Send inference events to this running monitor instead of starting one "
        "(several models share one monitor, as in a cluster); needs monitor=False.",
    )
    drift: DriftSettings = Field(default_factory=DriftSettings, description="The monitor's.")
    start_timeout_s: float = 180.0
    log_file: Path | None = Field(default=None, description="Children's logs; None: stderr.")


class ServingURLs(BaseModel):
    model_name: str
    predictor: str
    transformer: str = Field(description="Where entity keys go: the predictor in one hop.")
    monitor: str | None

    @property
    def predict_url(self) -> str:
        return f"{self.transformer}/v1/models/{self.model_name}:predict"

    @property
    def infer_url(self) -> str:
        return f"{self.transformer}/v2/models/{self.model_name}/infer"


class LocalServing:
    def __init__(self, config: LocalServingConfig) -> None:
        self.config = config
        self.children: dict[str, Child] = {}
        self.urls: ServingURLs | None = None
        self._sink: IO[str] | None = None

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.config.env}
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        env.setdefault("FEAST_USAGE", "False")
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
        return env

    def _registry_args(self) -> list[str]:
        args = ["--model", self.config.model]
        if self.config.tracking_uri:
            args += ["--tracking-uri", self.config.tracking_uri]
        if self.config.registry_uri:
            args += ["--registry-uri", self.config.registry_uri]
        return args

    def start(self) -> ServingURLs:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        if cfg.log_file is not None:
            cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._sink = cfg.log_file.open("a", encoding="utf-8")
        sink = self._sink or sys.stderr
        env = self._env()
        base = [sys.executable, "-m", "dex_serving.run"]
        ports = dict(zip(("predictor", "transformer", "monitor"), free_ports(3), strict=True))
        if cfg.monitor and cfg.monitor_url:
            raise ValueError("monitor_url names another monitor: set monitor=False with it")
        name = cfg.served_name or _served_name(cfg.model)
        one_hop = cfg.feature_component == "predictor"
        entry = "predictor" if one_hop else "transformer"
        urls = ServingURLs(
            model_name=name,
            predictor=f"http://127.0.0.1:{ports['predictor']}",
            transformer=f"http://127.0.0.1:{ports[entry]}",
            monitor=f"http://127.0.0.1:{ports['monitor']}" if cfg.monitor else None,
        )
        served = ["--served-name", name]
        if cfg.monitor:
            self.children["monitor"] = Child(
                "monitor",
                [
                    *base, "monitor", *self._registry_args(),
                    "--port", str(ports["monitor"]),
                    "--state-dir", str(cfg.state_dir / "monitor"),
                    *to_args(cfg.drift),
                ],
                env=env,
                sink=sink,
            )  # fmt: skip
        if not one_hop:
            predictor = [
                *base, "predictor", *self._registry_args(), *served,
                "--port", str(ports["predictor"]),
            ]  # fmt: skip
            self.children["predictor"] = Child("predictor", predictor, env=env, sink=sink)
        # The feature-reading server; without --predictor-host it predicts itself.
        transformer = [
            *base, "transformer", *self._registry_args(), *served,
            "--port", str(ports[entry]),
            "--feature-repo", str(cfg.feature_repo),
        ]  # fmt: skip
        if not one_hop:
            transformer += [
                "--predictor-host", f"127.0.0.1:{ports['predictor']}",
                "--predictor-protocol", cfg.predictor_protocol,
            ]  # fmt: skip
        if monitor_url := urls.monitor or cfg.monitor_url:
            # A monitor restart must not lose events: they wait in the state folder.
            transformer += [
                "--monitor-url", monitor_url,
                "--event-spool", str(cfg.state_dir / "event-spool"),
            ]  # fmt: skip
        self.children[entry] = Child(entry, transformer, env=env, sink=sink)
        self.urls = urls
        try:
            self._wait_ready(urls)
        except BaseException:
            self.stop()
            raise
        return urls

    def _wait_ready(self, urls: ServingURLs) -> None:
        checks = {
            role: f"{url}/v2/models/{urls.model_name}/ready"
            for role, url in (("predictor", urls.predictor), ("transformer", urls.transformer))
            if role in self.children
        }
        if urls.monitor:
            checks["monitor"] = f"{urls.monitor}/readyz"
        # One deadline for all: they start in parallel, so the later waits are short.
        deadline = time.monotonic() + self.config.start_timeout_s
        with httpx.Client(timeout=2.0) as client:
            for role, url in checks.items():
                self.children[role].wait_ready(
                    functools.partial(_answers_200, client, url),
                    timeout=max(0.0, deadline - time.monotonic()),
                )

    def stop(self) -> None:
        # Transformer first: it flushes buffered inference events to a still-running monitor.
        for role in ("transformer", "predictor", "monitor"):
            child = self.children.pop(role, None)
            if child is not None:
                child.stop()
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def __enter__(self) -> ServingURLs:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _answers_200(client: httpx.Client, url: str) -> bool:
    return client.get(url).status_code == 200


def _served_name(model: str) -> str:
    from dex.registry import ModelRef

    ref = ModelRef.parse(model)
    if not ref.name:
        raise ValueError(f"LocalServing needs a registered model (models:/...), got {model}")
    return ref.name


# ---------------------------------------------------------------- helpers for the demo


def predict(urls: ServingURLs, keys: list[int], batch: int = 100) -> list[dict[str, object]]:
    """V1 predictions through the transformer, ``batch`` entities per request."""
    out: list[dict[str, object]] = []
    with httpx.Client(timeout=60) as client:
        for i in range(0, len(keys), batch):
            response = client.post(
                urls.predict_url,
                json={"instances": [{"customer_id": k} for k in keys[i : i + batch]]},
            )
            if response.status_code != 200:
                raise RuntimeError(f"prediction failed ({response.status_code}): {response.text}")
            out.extend(response.json()["predictions"])
    return out


def wait_for_rows(urls: ServingURLs, at_least: int, timeout_s: float = 60.0) -> int:
    """Block until the monitor stored ``at_least`` feature rows (the logger is asynchronous)."""
    if urls.monitor is None:
        raise ValueError("serving was started without a monitor")
    with httpx.Client(timeout=5) as client:

        def rows() -> int:
            count = int(client.get(f"{urls.monitor}/events/count").json()["rows"])
            return count if count >= at_least else 0

        return eventually(rows, timeout=timeout_s, what=f"monitor holding {at_least} rows")


def compute_drift(urls: ServingURLs) -> list[dict[str, object]]:
    """Run the monitor's drift computation now (it also fires the trigger on drift)."""
    if urls.monitor is None:
        raise ValueError("serving was started without a monitor")
    response = httpx.post(f"{urls.monitor}/drift/compute", timeout=300)
    response.raise_for_status()
    return list(response.json())
