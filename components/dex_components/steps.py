"""Each pipeline step as a plain function over file paths and primitive values.

The KFP wrappers in :mod:`dex_components.kfp_components` only translate artifacts to paths
and call these, so every step can be unit-tested and run without KFP.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import pandas as pd

from dex.contract import FeatureContract
from dex.settings import DexSettings
from dex_components.errors import StepError
from dex_components.validate import ColumnRange, ValidationSpec, validate_frame

if TYPE_CHECKING:  # training imports MLflow: only the steps that train should pay for it
    from dex_components.training import TrainedModel

log = logging.getLogger("dex.step")

P = ParamSpec("P")
R = TypeVar("R")
TIMING_MARKER = "DEX_STEP_TIMING"


def timed(func: Callable[P, R]) -> Callable[P, R]:
    """Log how long the step's process spent starting (interpreter + imports) vs working.

    ``make bench`` reads these lines from the run log.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import psutil

        entered = time.time()
        startup = entered - psutil.Process().create_time()
        try:
            return func(*args, **kwargs)
        finally:
            record = {"step": func.__name__.lstrip("_"), "startup_s": round(startup, 3)}
            record["work_s"] = round(time.time() - entered, 3)
            print(f"{TIMING_MARKER} {json.dumps(record)}", flush=True)

    return wrapper


def setup() -> None:
    """Logging and MLflow stores for a step process (KFP runs each step in its own)."""
    from dex.registry import use_settings

    # One OpenMP thread: on these small tabular fits thread start-up outweighs the gain, and
    # when other processes share the cores, spin-waiting OpenMP threads made a 1 s fit take
    # 10 s. Set before scikit-learn loads its OpenMP runtime (it is imported lazily).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    use_settings(DexSettings())


def experiment_id(name: str) -> str:
    from dex.registry import ensure_experiment

    settings = DexSettings()
    artifact_root = os.environ.get("DEX_MLFLOW_ARTIFACT_ROOT")
    if artifact_root is None and not settings.tracking_uri.startswith(("http://", "https://")):
        # A local store: artifacts next to it. A tracking server (a cluster's) keeps its
        # own default root, which it serves: a step's pod has no disk that outlives it.
        artifact_root = settings.artifact_root.as_uri()
    return ensure_experiment(name, artifact_root)


def read_table(uri: str) -> pd.DataFrame:
    """A Parquet or CSV table; a file that is missing, empty or unreadable is a StepError
    naming it (pyarrow's own errors do not say which file they are about)."""
    path = Path(uri.removeprefix("file://"))
    remote = uri.startswith(("s3://", "gs://", "http://", "https://"))
    if not remote:
        if not path.exists():
            raise StepError(f"input data not found: {uri}")
        if path.is_file() and path.stat().st_size == 0:
            raise StepError(f"input data {uri} is an empty file (0 bytes)")
    try:
        if uri.startswith(("s3://", "gs://")):
            # pyarrow's own object-store clients (endpoint and credentials from the
            # environment, e.g. AWS_ENDPOINT_URL), as Feast reads its sources: no fsspec.
            from pyarrow import csv, fs, parquet

            filesystem, key = fs.FileSystem.from_uri(uri)
            if path.suffix == ".csv":
                with filesystem.open_input_stream(key) as stream:
                    return csv.read_csv(stream).to_pandas()
            return parquet.read_table(key, filesystem=filesystem).to_pandas()
        if path.suffix == ".csv":
            return pd.read_csv(uri if remote else path)
        return pd.read_parquet(uri if remote else path)
    except Exception as exc:  # pyarrow/pandas raise many types; the message is what helps
        kind = "CSV" if path.suffix == ".csv" else "Parquet"
        raise StepError(f"cannot read {uri} as {kind}: {type(exc).__name__}: {exc}") from exc


@timed
def validate_data(
    *,
    entity_source: str,
    entity_key: str,
    timestamp_column: str,
    label: str,
    label_values: list[int | str] | None,
    ranges: dict[str, dict[str, float]] | None,
    entities_path: str,
    report_path: str,
    task: str = "auto",
    gate_metric: str = "",
    entity_key_type: str = "auto",
) -> dict[str, Any]:
    """Checks the entity frame; returns its row count, the run's task and key type."""
    from dex.tasks import MIN_CLASS_ROWS

    setup()
    frame = read_table(entity_source)
    if timestamp_column in frame.columns and not pd.api.types.is_datetime64_any_dtype(
        frame[timestamp_column]
    ):
        frame[timestamp_column] = pd.to_datetime(frame[timestamp_column], utc=True, errors="coerce")
    spec = ValidationSpec(
        entity_key=entity_key,
        timestamp_column=timestamp_column,
        label=label or None,
        label_values=label_values,
        ranges={k: ColumnRange(**v) for k, v in (ranges or {}).items()},
        task=task or "auto",
        gate_metric=gate_metric,
        min_class_rows=MIN_CLASS_ROWS,
        entity_key_type=entity_key_type or "auto",
    )
    report = validate_frame(frame, spec)
    Path(report_path).write_text(report.to_markdown())
    log.info(
        "validated %s: %d rows, %d failed checks", entity_source, report.rows, len(report.failures)
    )
    report.raise_for_failures()
    frame.to_parquet(entities_path, index=False)
    return {"rows": report.rows, "task": report.task, "entity_key_type": report.entity_key_type}


@timed
def build_training_set(
    *,
    entities_path: str,
    feature_repo: str,
    feature_service: str,
    entity_key: str,
    timestamp_column: str,
    label: str,
    max_missing_fraction: float,
    output_path: str,
    task: str = "binary",
    entity_key_type: str = "int",
    categorical_features: list[str] | None = None,
) -> tuple[FeatureContract, dict[str, float]]:
    """(feature contract, reconciliation counts) of a point-in-time training set.

    Refuses, before any training, a feature the model cannot take (naming it): text with too
    many categories, dates, mixed types. Text features become categorical.
    """
    from dex.features import open_store
    from dex.tasks import categorical_columns
    from dex_components.errors import DataValidationError
    from dex_components.training_set import build_training_set as build

    setup()
    store = open_store(feature_repo)
    if not store.list_feature_services():
        # A fresh registry (a cluster step's own, in its pod): the repository's definitions
        # are the source of truth, as `feast apply` would register them.
        from dex.features import apply
        from dex.settings import DexSettings

        log.info("registry has no feature services: applying the definitions in %s", feature_repo)
        apply(DexSettings(feature_repo=Path(feature_repo)))
        store = open_store(feature_repo)
    try:
        frame, summary = build(
            store,
            pd.read_parquet(entities_path),
            feature_service=feature_service,
            entity_key=entity_key,
            timestamp_column=timestamp_column,
            label=label or None,
            max_missing_fraction=max_missing_fraction,
        )
    except ValueError as exc:  # unknown feature service: say which exist
        raise StepError(str(exc)) from exc
    categorical, problems = categorical_columns(
        frame, summary.feature_columns, list(categorical_features or [])
    )
    if problems:
        raise DataValidationError(
            "feature validation failed: "
            + "; ".join(f"column {p.column!r}: {p.rule} ({p.detail})" for p in problems)
        )
    frame.to_parquet(output_path, index=False)
    rec = summary.reconciliation
    log.info("training set: %s; categorical: %s", rec.model_dump_json(), categorical)
    contract = FeatureContract(
        feature_service=feature_service,
        feature_refs=summary.feature_refs,
        feature_columns=summary.feature_columns,
        entity_key=entity_key,
        label=label,
        timestamp_column=timestamp_column,
        task=task,
        categorical_features=categorical,
        entity_key_type=entity_key_type,
    )
    return contract, {k: float(v) for k, v in rec.model_dump().items()}


@timed
def split(
    *, input_path: str, timestamp_column: str, test_fraction: float, train_path: str, test_path: str
) -> dict[str, Any]:
    from dex_components.split import time_split

    setup()
    train, test, summary = time_split(
        pd.read_parquet(input_path), timestamp_column=timestamp_column, test_fraction=test_fraction
    )
    train.to_parquet(train_path, index=False)
    test.to_parquet(test_path, index=False)
    return summary.model_dump()


@timed
def tune(
    *,
    train_path: str,
    contract: FeatureContract,
    n_trials: int,
    timeout_s: float,
    experiment: str,
    seed: int,
) -> tuple[dict[str, Any], str]:
    from dex_components.tuning import tune as run_study

    setup()
    result = run_study(
        pd.read_parquet(train_path),
        feature_columns=contract.feature_columns,
        label=contract.label,
        timestamp_column=contract.timestamp_column,
        n_trials=n_trials,
        timeout_s=timeout_s,
        experiment_id=experiment_id(experiment),
        seed=seed,
        task=contract.task,
        categorical=contract.categorical_features,
    )
    log.info(
        "tuning: %d trials, best %.4f %s", result.trials, result.best_value, result.best_params
    )
    return result.best_params, result.parent_run_id


@timed
def train(
    *,
    train_path: str,
    params: dict[str, Any],
    parent_run_id: str,
    contract: FeatureContract,
    experiment: str,
    seed: int,
) -> TrainedModel:
    """The logged model; its contract now names the run's reference-data artifact."""
    from dex_components.training import train_and_log

    setup()
    return train_and_log(
        pd.read_parquet(train_path),
        contract=contract,
        params=params,
        experiment_id=experiment_id(experiment),
        seed=seed,
        parent_run_id=parent_run_id or None,
    )


def _evaluate(
    *,
    model_uri: str,
    reference_path: str,
    test_path: str,
    contract: FeatureContract,
    drift_report_path: str,
    run_id: str | None = None,
) -> tuple[dict[str, float], dict[str, Any], float]:
    """(metrics, classification payload, drift share) of a model on a holdout, with a drift
    report comparing the holdout to the training reference."""
    import mlflow

    from dex_components.evaluation import drift_report, evaluate_model

    setup()
    test = pd.read_parquet(test_path)
    reference = pd.read_parquet(reference_path)
    feature_columns = contract.feature_columns
    missing = [c for c in [*feature_columns, contract.label] if c not in test.columns]
    if missing:
        raise StepError(f"evaluation data lacks columns {missing}")
    model = mlflow.sklearn.load_model(model_uri)
    result = evaluate_model(model, test, contract)
    summary, html = drift_report(reference, test, feature_columns)
    Path(drift_report_path).write_text(html)
    metrics = {**result.metrics, "drift_share": summary.drift_share}
    if run_id:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
            mlflow.log_dict(summary.model_dump(), "evaluation/drift_summary.json")
    log.info("evaluation: %s", json.dumps(metrics))
    return metrics, result.model_dump(), summary.drift_share


# The training pipeline's step; evaluate_registered reuses _evaluate without a second timing line.
evaluate = timed(_evaluate)


@timed
def register_and_promote(
    *,
    run_id: str,
    model_uri: str,
    test_path: str,
    registered_model: str,
    contract: FeatureContract,
    gates: dict[str, Any],
    drift_share: float,
    decision_report_path: str,
) -> tuple[str, str]:
    import mlflow

    from dex.registry import TAG_DECISION
    from dex_components.promotion import Gates
    from dex_components.promotion import register_and_promote as promote

    setup()
    result = promote(
        model_uri=model_uri,
        run_id=run_id,
        registered_model=registered_model,
        contract=contract,
        holdout=pd.read_parquet(test_path),
        gates=Gates(**gates),
        drift_share=drift_share,
    )
    report = result.to_markdown()
    Path(decision_report_path).write_text(report)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_text(report, "promotion/decision.md")
        mlflow.set_tag(TAG_DECISION, result.decision)
    log.info(
        "promotion: v%s -> %s (%s)", result.version, result.decision, "; ".join(result.reasons)
    )
    return result.version, result.decision


def resolve_version(
    registered_model: str, version_or_alias: str
) -> tuple[str, FeatureContract, str]:
    """(version, contract, run id) of ``name`` at a version number or an alias."""
    from dex.registry import ModelNotFoundError, ModelRef, resolve

    try:
        resolved = resolve(ModelRef.registered(registered_model, version_or_alias))
    except ModelNotFoundError as exc:
        raise StepError(str(exc)) from exc
    if resolved.contract is None or resolved.run_id is None:
        raise StepError(f"{resolved.uri} records no feature contract (dex.* tags) or run")
    return str(resolved.version), resolved.contract, resolved.run_id


@timed
def evaluate_registered(
    *,
    registered_model: str,
    version_or_alias: str,
    data_path: str,
    drift_report_path: str,
) -> tuple[str, dict[str, float], dict[str, Any]]:
    import mlflow

    from dex_components.training import REFERENCE_ARTIFACT

    setup()
    version, contract, run_id = resolve_version(registered_model, version_or_alias)
    reference = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT)
    metrics, classification, _ = _evaluate(
        model_uri=f"models:/{registered_model}/{version}",
        reference_path=reference,
        test_path=data_path,
        contract=contract,
        drift_report_path=drift_report_path,
    )
    return version, metrics, classification


@timed
def promote_challenger(
    *, registered_model: str, data_path: str, gates: dict[str, Any], decision_report_path: str
) -> tuple[str, str]:
    from dex_components.promotion import Gates
    from dex_components.promotion import promote_challenger as promote

    setup()
    result = promote(
        registered_model=registered_model, holdout=pd.read_parquet(data_path), gates=Gates(**gates)
    )
    Path(decision_report_path).write_text(result.to_markdown())
    return result.version, result.decision
