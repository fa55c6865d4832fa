"""Small workloads for a dev cluster with a node: the hello Pod + Service, waiting for a pod,
and plain HTTP to cluster addresses (tests, benchmarks, ``dexctl dev cluster``)."""

from __future__ import annotations

import urllib.request
from typing import Any

from dexctl.polling import eventually

HELLO_PORT = 8080


def hello_manifests(name: str, image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Pod serving ``hello from <pod>`` on :8080 (readiness-probed) and a ClusterIP Service
    on port 80 in front of it. The image is local: never pulled."""
    labels = {"app": name}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "hello",
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
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": HELLO_PORT}]},
    }
    return pod, service


def pod_is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def wait_pod_ready(core: Any, namespace: str, name: str, *, timeout: float = 60.0) -> Any:
    """Poll until the pod is Ready; return it (``core`` is a kubernetes ``CoreV1Api``)."""

    def ready() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod_is_ready(pod) else None

    return eventually(ready, timeout=timeout, interval=0.1, what=f"pod {namespace}/{name} Ready")


def http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())
