"""Run a DEX pipeline locally through ``kfp.local`` (each step a subprocess), with progress.

kfp.local streams every task's output through ``print`` and the root logger; we send all of
it to a log file in the state folder and follow that file for task start/finish lines, so
the terminal shows one clean row per step (and the log keeps every detail).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dex.features import export_feast_env
from dex.registry import use_settings
from dex.settings import DexSettings

StepState = Literal["pending", "running", "succeeded", "failed"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '?([\w.-]+)'?")
_FINISHED = re.compile(r"Task '?([\w.-]+)'? finished with status (\w+)")
_ERROR = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Invalid)): (.+)$")


@dataclass
class StepProgress:
    name: str
    state: StepState = "pending"
    started: float | None = None
    finished: float | None = None

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.monotonic()) - self.started


@dataclass
class RunResult:
    pipeline: str
    succeeded: bool
    log_path: Path
    steps: list[StepProgress]
    seconds: float
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


class PipelineFailedError(RuntimeError):
    def __init__(self, result: RunResult) -> None:
        super().__init__(
            result.error or f"pipeline {result.pipeline} failed; see {result.log_path}"
        )
        self.result = result


def step_names(pipeline_func: Any) -> list[str]:
    """Task names in dependency order (a topological sort of the compiled DAG)."""
    tasks = pipeline_func.pipeline_spec.root.dag.tasks
    ordered: list[str] = []
    remaining = dict(tasks)
    while remaining:
        ready = sorted(n for n, t in remaining.items() if set(t.dependent_tasks) <= set(ordered))
        if not ready:  # a cycle cannot compile; keep whatever is left rather than loop
            ordered.extend(sorted(remaining))
            break
        ordered.append(ready[0])
        del remaining[ready[0]]
    return ordered


def prepare_environment(settings: DexSettings) -> None:
    """Export absolute store locations: every step is a fresh process and must find them."""
    os.environ["DEX_STATE_DIR"] = str(settings.state)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # see dex_components.steps.setup
    export_feast_env(settings)
    use_settings(settings)


def last_error(log_text: str) -> str | None:
    """The last 'SomethingError: message' line of a failing task's traceback."""
    found = None
    for line in _ANSI.sub("", log_text).splitlines():
        match = _ERROR.match(line)
        if match and match.group(1) not in {"RuntimeError"}:
            found = f"{match.group(1)}: {match.group(2).strip()}"
    return found


@contextlib.contextmanager
def _stdout_to(path: Path) -> Iterator[None]:
    with path.open("a", buffering=1) as log, contextlib.redirect_stdout(log):
        yield


@contextlib.contextmanager
def _steps_tmpdir(root: Path) -> Iterator[None]:
    """The steps' temporary files go in a folder of this run, removed with it. KFP's
    lightweight components write their source to ``mktemp -d`` before running it and never
    remove it (in a pod, /tmp goes with the pod); on this machine, each step left one
    folder in /tmp. Steps inherit TMPDIR from this process's environment."""
    # This process's own temporary folder is fixed first: Python reads TMPDIR once, at the
    # first call, which must not find the run's folder (removed after it).
    tempfile.gettempdir()
    root.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="run-", dir=root)
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = scratch
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        shutil.rmtree(scratch, ignore_errors=True)


def run_local(
    name: str,
    parameters: dict[str, Any],
    settings: DexSettings,
    on_progress: Callable[[list[StepProgress]], None] | None = None,
    poll_s: float = 0.2,
) -> RunResult:
    """Run pipeline ``name`` synchronously; raises :class:`PipelineFailedError` on failure."""
    from kfp import local

    from dex_pipelines import pipelines

    pipeline_func = pipelines()[name]
    prepare_environment(settings)
    settings.pipeline_root.mkdir(parents=True, exist_ok=True)
    logs = settings.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}.log"
    steps = {n: StepProgress(n) for n in step_names(pipeline_func)}
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(settings.pipeline_root),
                raise_on_error=True,
            )
            with _stdout_to(log_path):
                task = pipeline_func(**parameters)
            outcome["outputs"] = dict(getattr(task, "outputs", None) or {})
        except BaseException as exc:  # reported to the caller's thread below
            outcome["exception"] = exc

    with _steps_tmpdir(settings.state / "tmp"):
        started = time.monotonic()
        worker = threading.Thread(target=work, name=f"kfp-local-{name}", daemon=True)
        worker.start()
        offset = 0
        while True:
            alive = worker.is_alive()
            if log_path.exists():
                with log_path.open() as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset = fh.tell()
                for line in _ANSI.sub("", chunk).splitlines():
                    if m := _STARTED.search(line):
                        step = steps.setdefault(m.group(1), StepProgress(m.group(1)))
                        step.state, step.started = "running", time.monotonic()
                    elif m := _FINISHED.search(line):
                        step = steps.setdefault(m.group(1), StepProgress(m.group(1)))
                        step.finished = time.monotonic()
                        step.state = "succeeded" if m.group(2).upper() == "SUCCESS" else "failed"
            if on_progress:
                on_progress(list(steps.values()))
            if not alive:
                break
            worker.join(poll_s)

    failed = "exception" in outcome or any(s.state == "failed" for s in steps.values())
    error = None
    if failed:
        # kfp.local's own exception says only which task failed, in terminal colours.
        fallback = _ANSI.sub("", str(outcome.get("exception", "unknown error")))
        error = last_error(log_path.read_text()) or fallback
        for s in steps.values():
            if s.state == "running":
                s.state, s.finished = "failed", time.monotonic()
    result = RunResult(
        pipeline=name,
        succeeded=not failed,
        log_path=log_path,
        steps=list(steps.values()),
        seconds=time.monotonic() - started,
        error=error,
        outputs=outcome.get("outputs", {}),
    )
    if failed:
        raise PipelineFailedError(result)
    return result


def default_parameters(name: str, settings: DexSettings) -> dict[str, Any]:
    """What a local run passes: the project's description (dex.yaml, ``DEX_*``), so a user
    never repeats it with ``-p``; only parameters the pipeline has."""
    import json

    from dex_pipelines.catalog import parameters

    gates = settings.gates
    params: dict[str, Any] = {
        "entity_source": settings.entity_source_uri,
        "feature_repo": str(settings.feature_repo.resolve()),
        "feature_service": settings.feature_service,
        "entity_key": settings.entity_key,
        "entity_key_type": settings.entity_key_type,
        "timestamp_column": settings.timestamp_column,
        "label": settings.label,
        "task": settings.task,
        "categorical_json": json.dumps(settings.categorical_features),
        "label_values_json": (
            json.dumps(settings.label_values) if settings.label_values is not None else ""
        ),
        "registered_model": settings.registered_model,
        "experiment": settings.experiment,
        "gate_metric": gates.metric,
        "min_score": gates.min_value,
        "promotion_margin": gates.margin,
        "max_drift_share": gates.max_drift_share,
    }
    known = parameters(name)
    return {k: v for k, v in params.items() if k in known}


def retrain_command(parameters: dict[str, Any] | None = None) -> str:
    """The command a local drift monitor runs to retrain: this interpreter's dexctl (a bare
    ``dexctl`` is not on PATH when the virtualenv is not activated)."""
    params = [arg for k, v in (parameters or {}).items() for arg in ("-p", f"{k}={v}")]
    argv = [sys.executable, "-m", "dexctl", "pipeline", "run", "training", "--local", *params]
    return shlex.join(argv)


def coerce(value: str) -> Any:
    """-p key=value: ints, floats and booleans as such, everything else as text."""
    for cast in (int, float):
        with contextlib.suppress(ValueError):
            return cast(value)
    if value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return value
