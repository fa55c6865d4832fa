"""The started API server is the real thing: CRD schema + CEL validation, the status
subresource, watches and server-side apply behave as in any cluster."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.exceptions import ApiException

from dex_testing.devcluster import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

GROUP = "test.dex.dataenginex.io"
VERSION = "v1"
PLURAL = "widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": PLURAL,
            "singular": "widget",
            "kind": "Widget",
            "listKind": "WidgetList",
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "green", "blue"]},
                                    "minReplicas": {"type": "integer"},
                                    "maxReplicas": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.minReplicas) || !has(self.maxReplicas)"
                                        " || self.minReplicas <= self.maxReplicas",
                                        "message": "minReplicas must not exceed maxReplicas",
                                        "fieldPath": ".minReplicas",
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "observedGeneration": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def _widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def widgets(kube_api: Any) -> Iterator[client.CustomObjectsApi]:
    ext = client.ApiextensionsV1Api(kube_api)
    try:
        ext.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    eventually(established, timeout=30, what="CRD Established")
    yield client.CustomObjectsApi(kube_api)
    # Matters on an existing cluster (USE_EXISTING_CLUSTER); a started one is thrown away.
    ext.delete_custom_resource_definition(WIDGET_CRD["metadata"]["name"])


@pytest.fixture
def namespace(kube_api: Any) -> Iterator[str]:
    name = f"cp-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _create(api: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    return result


def _rejection(api: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as info:
        _create(api, ns, body)
    assert info.value.status == 422, info.value.body
    status: dict[str, Any] = json.loads(info.value.body)
    return status


def _fields(status: dict[str, Any]) -> list[str]:
    # When the schema already rejects an object the API server skips CEL rules and adds a
    # field-less "<nil>" cause saying so; it names no field, so it is not one of ours.
    return [c["field"] for c in status["details"]["causes"] if c["field"] != "<nil>"]


def test_openapi_schema_violation_is_rejected_naming_the_field(
    widgets: client.CustomObjectsApi, namespace: str
) -> None:
    status = _rejection(widgets, namespace, _widget("too-big", size=11, color="red"))
    assert _fields(status) == ["spec.size"]
    assert "less than or equal to 10" in status["message"]

    status = _rejection(widgets, namespace, _widget("purple", size=1, color="purple"))
    assert _fields(status) == ["spec.color"]
    assert 'Unsupported value: "purple"' in status["message"]

    status = _rejection(widgets, namespace, _widget("no-size", color="red"))
    assert _fields(status) == ["spec.size"]
    assert "Required value" in status["message"]


def test_cel_rule_violation_is_rejected_naming_the_field(
    widgets: client.CustomObjectsApi, namespace: str
) -> None:
    status = _rejection(
        widgets, namespace, _widget("inverted", size=1, minReplicas=3, maxReplicas=2)
    )
    causes = status["details"]["causes"]
    assert [c["field"] for c in causes] == ["spec.minReplicas"]
    assert "minReplicas must not exceed maxReplicas" in causes[0]["message"]

    ok = _create(widgets, namespace, _widget("ordered", size=1, minReplicas=2, maxReplicas=3))
    assert ok["spec"]["minReplicas"] == 2


def test_status_subresource_separates_spec_and_status(
    widgets: client.CustomObjectsApi, namespace: str
) -> None:
    created = _create(widgets, namespace, _widget("split", size=2))
    assert created["metadata"]["generation"] == 1

    # Writing status through the main resource is silently dropped...
    main = widgets.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "split", {"spec": {"size": 3}, "status": {"phase": "X"}}
    )
    assert main["spec"]["size"] == 3
    assert "status" not in main
    assert main["metadata"]["generation"] == 2

    # ...and writing spec through /status is dropped too, without bumping generation.
    sub = widgets.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "split",
        {"spec": {"size": 9}, "status": {"phase": "Ready", "observedGeneration": 2}},
    )
    assert sub["status"] == {"phase": "Ready", "observedGeneration": 2}
    assert sub["spec"]["size"] == 3
    assert sub["metadata"]["generation"] == 2


def test_watch_sees_added_modified_deleted(
    widgets: client.CustomObjectsApi, namespace: str
) -> None:
    start = widgets.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    resource_version = start["metadata"]["resourceVersion"]

    _create(widgets, namespace, _widget("watched", size=1))
    widgets.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "watched", {"spec": {"size": 2}}
    )
    widgets.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "watched")

    # Watching from the list's resourceVersion replays everything after it, in order, so
    # the changes above are seen without racing a watcher thread.
    seen: list[tuple[str, int]] = []
    stream = watch.Watch()
    for event in stream.stream(
        widgets.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=resource_version,
        timeout_seconds=20,
    ):
        obj = event["object"]
        if obj["metadata"]["name"] == "watched":
            seen.append((event["type"], obj["spec"]["size"]))
        if event["type"] == "DELETED":
            stream.stop()
    assert seen == [("ADDED", 1), ("MODIFIED", 2), ("DELETED", 2)]


def test_server_side_apply_records_field_managers(
    kube_api: Any, widgets: client.CustomObjectsApi, namespace: str
) -> None:
    dyn = dynamic.DynamicClient(kube_api)
    resource = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="Widget")

    dyn.server_side_apply(
        resource,
        body=_widget("applied", size=1, color="red"),
        namespace=namespace,
        field_manager="dex-user",
    )
    # A second manager owns a different field; both are recorded.
    dyn.server_side_apply(
        resource,
        body={**_widget("applied", size=1), "spec": {"size": 1, "maxReplicas": 4}},
        namespace=namespace,
        field_manager="dex-operator",
    )
    # Changing a field another manager owns is a conflict unless forced.
    with pytest.raises(ApiException) as info:
        dyn.server_side_apply(
            resource,
            body=_widget("applied", size=1, color="blue"),
            namespace=namespace,
            field_manager="dex-operator",
        )
    assert info.value.status == 409

    obj = dyn.get(resource, name="applied", namespace=namespace).to_dict()
    managers = {
        m["manager"]: json.dumps(m["fieldsV1"])
        for m in obj["metadata"]["managedFields"]
        if m["operation"] == "Apply"
    }
    assert set(managers) == {"dex-user", "dex-operator"}
    assert "f:color" in managers["dex-user"]
    assert "f:maxReplicas" in managers["dex-operator"]
    assert "f:color" not in managers["dex-operator"]
