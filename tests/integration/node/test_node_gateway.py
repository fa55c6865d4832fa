"""A real Gateway API data plane on a real node: Traefik (``make gateway``) serves an HTTPRoute
that splits traffic by weight between two Deployments' Services, follows a weight patch,
and reports each route generation it applied in ``status.parents[].conditions``, which is
what DEX's operator relies on to know a traffic step is in force."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dex_testing.devcluster import eventually, leftovers
from dex_testing.devcluster.workloads import HELLO_PORT
from dex_testing.gateway import GROUP, VERSION, Gateway, folder, is_true

from .conftest import NodeRun

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="node")]

NAMESPACE = "gw-split"
HOST = "split.dex.test"
BACKENDS = ("blue", "green")
REQUESTS = 1000
TOLERANCE = 0.05  # of REQUESTS; Traefik's weighted round-robin is exact, not statistical


@pytest.fixture(scope="module")
def gateway_built() -> Path:
    built = folder()
    if not os.access(built / "traefik", os.X_OK) or not (built / "crd").is_dir():
        message = f"Traefik and the Gateway API CRDs are not built in {built}: run `make gateway`"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return built


def _deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "hello",  # answers "hello from <pod name>": its identity
                            "image": image,
                            "imagePullPolicy": "Never",
                            "ports": [{"containerPort": HELLO_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": HELLO_PORT},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": HELLO_PORT}]},
    }


def _rules(blue: int, green: int) -> list[dict[str, Any]]:
    return [
        {
            "backendRefs": [
                {"name": "blue", "port": 80, "weight": blue},
                {"name": "green", "port": 80, "weight": green},
            ]
        }
    ]


def _route(gateway: Gateway, blue: int, green: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": "split"},
        "spec": {
            "parentRefs": [{"name": gateway.name, "namespace": gateway.namespace}],
            "hostnames": [HOST],
            "rules": _rules(blue, green),
        },
    }


def _split(gateway: Gateway, count: int) -> Counter[str]:
    """``count`` keep-alive requests through Traefik; which Deployment answered each."""
    seen: Counter[str] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        for _ in range(count):
            conn.request("GET", "/", headers={"Host": HOST})
            resp = conn.getresponse()
            body = resp.read().decode()
            if resp.status != 200:
                seen[f"status {resp.status}"] += 1
                continue
            pod = body.removeprefix("hello from ").strip()
            seen[next((b for b in BACKENDS if pod.startswith(f"{b}-")), pod)] += 1
    finally:
        conn.close()
    return seen


def _parent_accepted(route: dict[str, Any]) -> bool:
    """Accepted=True (and ResolvedRefs=True) for the route's current generation."""
    generation = int(route["metadata"]["generation"])
    parents = route.get("status", {}).get("parents") or []
    return any(
        p.get("controllerName") == "traefik.io/gateway-controller"
        and is_true(p.get("conditions"), "Accepted", generation)
        and is_true(p.get("conditions"), "ResolvedRefs", generation)
        for p in parents
    )


def test_weighted_split_follows_patches(
    node_run: NodeRun, core_api: Any, gateway_built: Path
) -> None:
    from kubernetes import client, config

    state = node_run.plane.state
    assert state is not None
    assert state.node is not None
    api = config.new_client_from_config(config_file=str(state.kubeconfig))
    apps = client.AppsV1Api(api)
    objects = client.CustomObjectsApi(api)
    report: dict[str, Any] = {}
    try:
        core_api.create_namespace({"metadata": {"name": NAMESPACE}})
        for name in BACKENDS:
            apps.create_namespaced_deployment(NAMESPACE, _deployment(name, state.node.hello_image))
            core_api.create_namespaced_service(NAMESPACE, _service(name))

        with Gateway(state, node_run.work / "gateway") as gateway:
            report["gateway_start_s"] = gateway.startup_seconds
            gw = objects.get_namespaced_custom_object(
                GROUP, VERSION, gateway.namespace, "gateways", gateway.name
            )
            assert [a["value"] for a in gw["status"]["addresses"]] == ["127.0.0.1"]
            assert is_true(gw["status"]["conditions"], "Programmed", gw["metadata"]["generation"])

            def rollout_done() -> bool:
                return all(
                    (apps.read_namespaced_deployment(n, NAMESPACE).status.ready_replicas or 0) == 1
                    for n in BACKENDS
                )

            eventually(rollout_done, timeout=90, what="blue and green Deployments ready")

            objects.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "httproutes", _route(gateway, 90, 10)
            )

            def read_route() -> dict[str, Any]:
                route: dict[str, Any] = objects.get_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, "httproutes", "split"
                )
                return route

            eventually(
                lambda: _parent_accepted(read_route()), timeout=30, what="route 90/10 Accepted"
            )
            # Both backends' endpoints in Traefik's configuration (EndpointSlices can lag).
            eventually(
                lambda: set(_split(gateway, 20)) == set(BACKENDS),
                timeout=30,
                what="both backends answer through the Gateway",
            )
            first = _split(gateway, REQUESTS)
            report["split_90_10"] = dict(first)
            assert set(first) == set(BACKENDS), first
            assert abs(first["blue"] - 0.9 * REQUESTS) <= TOLERANCE * REQUESTS, first

            patched = objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                "httproutes",
                "split",
                {"spec": {"rules": _rules(50, 50)}},
            )
            generation = int(patched["metadata"]["generation"])
            began = time.monotonic()

            def applied() -> dict[str, Any] | None:
                route = read_route()
                current = int(route["metadata"]["generation"]) == generation
                return route if current and _parent_accepted(route) else None

            route = eventually(applied, timeout=30, what=f"route generation {generation} Accepted")
            report["status_observed_generation_s"] = round(time.monotonic() - began, 3)
            assert route is not None
            # Right after the status names the generation: is the new split already served?
            report["split_100_right_after_status"] = dict(_split(gateway, 100))

            def moved() -> Counter[str] | None:
                window = _split(gateway, 100)
                return window if abs(window["green"] - 50) <= 10 else None

            eventually(moved, timeout=30, interval=0.05, what="the split to move to 50/50")
            report["weight_applied_s"] = round(time.monotonic() - began, 3)
            second = _split(gateway, REQUESTS)
            report["split_50_50"] = dict(second)
            assert set(second) == set(BACKENDS), second
            assert abs(second["blue"] - 0.5 * REQUESTS) <= TOLERANCE * REQUESTS, second
            final = read_route()
            parent = final["status"]["parents"][0]
            report["route_status"] = {
                "generation": final["metadata"]["generation"],
                "conditions": [
                    {k: c.get(k) for k in ("type", "status", "reason", "observedGeneration")}
                    for c in parent["conditions"]
                ],
            }
            assert is_true(parent["conditions"], "Accepted", generation), parent
        print("gateway report:", json.dumps(report, indent=1))
        assert not any(p.name == "traefik" for p in state.processes)
    finally:
        api.close()

    left = node_run.stop_and_compare()
    assert left == [], "\n".join(left)
    assert leftovers(state) == []
