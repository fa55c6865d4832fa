"""The informer: what the watches last said, never older than what it already holds, indexed
by the DexModel an object is labelled as belonging to."""

from __future__ import annotations

from typing import Any

from dex_operator import MODEL_LABEL
from dex_operator.informer import Store


def obj(name: str, rv: str, model: str | None = "churn", **extra: Any) -> dict[str, Any]:
    labels = {MODEL_LABEL: model} if model else {}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": "prod",
            "resourceVersion": rv,
            "labels": labels,
            "managedFields": [{"manager": "kubectl"}],
        },
        **extra,
    }


def test_an_older_echo_never_replaces_a_newer_entry() -> None:
    store = Store(owned_by_label=True)
    store.observe(obj("churn-v2", "12", status={"ready": True}))
    store.observe(obj("churn-v2", "11", status={"ready": False}))  # a late watch event
    got = store.get("prod", "churn-v2")
    assert got is not None
    assert got["metadata"]["resourceVersion"] == "12"
    assert got["status"] == {"ready": True}
    store.observe(obj("churn-v2", "13", status={"ready": False}))
    got = store.get("prod", "churn-v2")
    assert got is not None
    assert got["status"] == {"ready": False}


def test_objects_are_listed_by_the_dexmodel_they_are_labelled_for() -> None:
    store = Store(owned_by_label=True)
    store.observe(obj("churn-v1", "1"))
    store.observe(obj("churn-v2", "2"))
    store.observe(obj("fraud-v1", "3", model="fraud"))
    assert sorted(store.of_model("prod", "churn")) == ["churn-v1", "churn-v2"]
    assert list(store.of_model("prod", "fraud")) == ["fraud-v1"]
    assert store.of_model("staging", "churn") == {}


def test_a_relabelled_or_unlabelled_or_deleted_object_leaves_its_old_model() -> None:
    store = Store(owned_by_label=True)
    store.observe(obj("churn-v1", "1"))
    store.observe(obj("churn-v1", "2", model="fraud"))
    assert store.of_model("prod", "churn") == {}
    assert list(store.of_model("prod", "fraud")) == ["churn-v1"]
    store.observe(obj("churn-v1", "3", model=None))  # label removed: not a DexModel's any more
    assert store.get("prod", "churn-v1") is None
    assert store.of_model("prod", "fraud") == {}
    store.observe(obj("churn-v2", "4"))
    store.observe(obj("churn-v2", "4"), deleted=True)
    assert store.get("prod", "churn-v2") is None
    assert len(store) == 0


def test_entries_drop_managed_fields_and_are_copies() -> None:
    store = Store(owned_by_label=True)
    source = obj("churn-v1", "1", spec={"predictor": {"minReplicas": 1}})
    store.observe(source)
    source["spec"]["predictor"]["minReplicas"] = 5  # the caller's object, changed afterwards
    got = store.get("prod", "churn-v1")
    assert got is not None
    assert "managedFields" not in got["metadata"]
    assert got["spec"]["predictor"]["minReplicas"] == 1
    got["spec"]["predictor"]["minReplicas"] = 9  # a reader's change stays the reader's
    again = store.get("prod", "churn-v1")
    assert again is not None
    assert again["spec"]["predictor"]["minReplicas"] == 1


def test_dexmodels_are_their_own_model_and_lose_confirmation_when_deleted() -> None:
    store = Store(owned_by_label=False)
    model = obj("churn", "5", model=None)
    store.observe(model)
    assert list(store.of_model("prod", "churn")) == ["churn"]
    assert not store.confirmed("prod", "churn")
    store.confirm("prod", "churn")
    assert store.confirmed("prod", "churn")
    store.observe(model, deleted=True)
    assert not store.confirmed("prod", "churn")  # a namesake created later starts live
