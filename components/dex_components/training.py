"""Train + log: fit the final model and log it to MLflow with everything serving needs.

The run carries the model (signature, input example, pinned requirements), the training
reference frame (the drift monitor's baseline) and the feature contract as tags; the
contract is copied onto the model version when the promotion step registers it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from pydantic import BaseModel

from dex.contract import FeatureContract
from dex_components.model import build_estimator, n_iter, pinned_requirements

REFERENCE_ARTIFACT = "reference/reference.parquet"
MODEL_NAME_IN_RUN = "model"
REFERENCE_SAMPLE_ROWS = 5000
# cloudpickle, not MLflow's default skops: importing skops's trusted-type tables imports
# all of scikit-learn (~9 s in every process that saves or loads a model: train, evaluate,
# promote, the predictor). The registry is write-controlled, so its pickles are trusted;
# a version from elsewhere should come in through the pipeline, not be loaded directly.
SERIALIZATION_FORMAT = "cloudpickle"


class TrainedModel(BaseModel):
    run_id: str
    model_uri: str
    contract: FeatureContract


def train_and_log(
    train: pd.DataFrame,
    *,
    contract: FeatureContract,
    params: dict[str, Any],
    experiment_id: str,
    seed: int,
    parent_run_id: str | None = None,
) -> TrainedModel:
    from mlflow.models import infer_signature

    x, y = train[contract.feature_columns], train[contract.label]
    model = build_estimator(params, seed, contract.task, contract.categorical_features).fit(x, y)
    contract = contract.model_copy(update={"reference_data": REFERENCE_ARTIFACT})
    example = x.head(5)
    signature = infer_signature(example, model.predict(example))

    tags = {**contract.to_tags(), "dex.step": "train"}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(experiment_id=experiment_id, run_name="train", tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_params({"train_rows": len(train), "seed": seed})
        mlflow.log_metric("n_iter", float(n_iter(model)))
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_NAME_IN_RUN,
            signature=signature,
            input_example=example,
            pip_requirements=pinned_requirements(),
            serialization_format=SERIALIZATION_FORMAT,
        )
        reference = train[[*contract.feature_columns, contract.label]]
        reference = reference.sample(min(len(reference), REFERENCE_SAMPLE_ROWS), random_state=seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(REFERENCE_ARTIFACT).name
            reference.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))
    return TrainedModel(run_id=run.info.run_id, model_uri=info.model_uri, contract=contract)
