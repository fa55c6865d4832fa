"""The transformer's start-up check names how the online service differs from the contract."""

from __future__ import annotations

from dex.registry import ModelRef
from dex_serving.features import contract_difference


def test_difference_names_missing_extra_and_order() -> None:
    assert contract_difference(["v:a", "v:b"], ["v:a", "v:b"]) is None
    assert "missing online: ['v:b']" in str(contract_difference(["v:a", "v:b"], ["v:a"]))
    assert "not in the contract: ['v:c']" in str(contract_difference(["v:a"], ["v:a", "v:c"]))
    assert "different order" in str(contract_difference(["v:a", "v:b"], ["v:b", "v:a"]))


def test_model_ref_parsing() -> None:
    assert ModelRef.parse("models:/churn@champion") == ModelRef(name="churn", alias="champion")
    assert ModelRef.parse("models:/churn/3") == ModelRef(name="churn", version="3")
    assert ModelRef.parse("s3://bucket/model") == ModelRef(uri="s3://bucket/model")
    assert ModelRef.parse("models:/churn/3").describe() == "models:/churn/3"
