"""The Prometheus analysis provider against a real Prometheus (Debian package) scraping a
real metrics endpoint on 127.0.0.1: default PromQL templates with the revision/version
substituted, gate evaluation, and failure modes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import yaml
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric, UnknownMetricFamily

from dex_operator.analysis import (
    AnalysisContext,
    AnalysisError,
    DexDriftProvider,
    PrometheusProvider,
    evaluate,
)
from dex_operator.crd.models import AnalysisGate
from dex_testing.devcluster import eventually
from dexctl.processes import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="prometheus")]

ERROR_RATIO = {"churn-predictor-00001": 0.01, "churn-predictor-00002": 0.5}


class ServingMetrics:
    """Knative queue-proxy style request counters growing 100 req/s per revision, with a
    fixed 5xx share, plus the DEX monitor's drift gauge."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        total = 100.0 * (time.monotonic() - self.started)
        # Untyped: a typed counter would be renamed *_total; Knative's name has no suffix.
        requests = UnknownMetricFamily(
            "revision_app_request_count",
            "Requests.",
            labels=["namespace", "revision_name", "response_code_class"],
        )
        for revision, ratio in ERROR_RATIO.items():
            requests.add_metric(["prod", revision, "2xx"], total * (1 - ratio))
            requests.add_metric(["prod", revision, "5xx"], total * ratio)
        yield requests
        drift = GaugeMetricFamily("dex_drift_share", "Drift.", labels=["model", "version"])
        drift.add_metric(["churn", "1"], 0.1)
        drift.add_metric(["churn", "2"], 0.6)
        yield drift


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def metrics_endpoint() -> Iterator[str]:
    registry = CollectorRegistry()
    registry.register(ServingMetrics())  # type: ignore[arg-type]
    (port,) = free_ports(1)
    server = make_server("127.0.0.1", port, make_wsgi_app(registry), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture(scope="module")
def prometheus(metrics_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not installed: apt-get install prometheus (.ci/run does)")
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "serving", "static_configs": [{"targets": [metrics_endpoint]}]}
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,) = free_ports(1)
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (work / "prometheus.log").read_text()[-2000:]
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
            return bool(resp.status == 200)

    try:
        eventually(ready, timeout=30, what="prometheus ready")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


def ctx(revision: str, version: str = "2") -> AnalysisContext:
    return AnalysisContext(model="churn", namespace="prod", revision=revision, version=version)


def gate(**kw: Any) -> AnalysisGate:
    return AnalysisGate.model_validate(
        {"name": "g", "metric": "errorRate", "threshold": 0.05, "window": "5s", **kw}
    )


def test_error_rate_template_per_revision(prometheus: str) -> None:
    provider = PrometheusProvider(prometheus)
    good = eventually(
        lambda: provider.measure(gate(), ctx("churn-predictor-00001")),
        timeout=30,
        what="error-rate series scraped",
    )
    assert good == pytest.approx(0.01, abs=0.002)
    bad = provider.measure(gate(), ctx("churn-predictor-00002"))
    assert bad == pytest.approx(0.5, abs=0.02)
    results = evaluate(
        [gate(name="errors")], {"prometheus": provider}, ctx("churn-predictor-00002")
    )
    assert results[0].passed is False
    assert results[0].value == pytest.approx(0.5, abs=0.02)
    assert evaluate([gate()], {"prometheus": provider}, ctx("churn-predictor-00001"))[0].passed


def test_drift_template_and_unknown_revision_has_no_data(prometheus: str) -> None:
    provider = PrometheusProvider(prometheus)
    drift = gate(metric="drift", threshold=0.3)
    value = eventually(
        lambda: provider.measure(drift, ctx("x", version="2")),
        timeout=30,
        what="drift gauge scraped",
    )
    assert value == pytest.approx(0.6)
    assert provider.measure(gate(), ctx("no-such-revision")) is None
    (result,) = evaluate([gate()], {"prometheus": provider}, ctx("no-such-revision"))
    assert result.passed is False
    assert result.message == "no data"


def test_bad_query_and_unreachable_server_fail_the_gate(prometheus: str) -> None:
    with pytest.raises(AnalysisError, match="query failed"):
        PrometheusProvider(prometheus).measure(gate(metric="custom", query="sum(("), ctx("x"))
    (port,) = free_ports(1)
    (result,) = evaluate(
        [gate()],
        {"prometheus": PrometheusProvider(f"http://127.0.0.1:{port}", timeout=2)},
        ctx("x"),
    )
    assert result.passed is False
    assert "unreachable" in result.message


def test_dex_drift_provider_reads_the_monitor_endpoint(metrics_endpoint: str) -> None:
    provider = DexDriftProvider(f"http://{metrics_endpoint}")
    drift = gate(metric="drift", provider="dexDrift", threshold=0.3)
    assert provider.measure(drift, ctx("x", version="1")) == pytest.approx(0.1)
    assert provider.measure(drift, ctx("x", version="9")) is None


def test_prometheus_binary_is_the_debian_one() -> None:
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus not on PATH (make test installs it)"
    owner = subprocess.run(
        ["dpkg", "-S", os.path.realpath(binary)], capture_output=True, text=True, check=False
    )
    assert owner.stdout.startswith("prometheus:"), owner.stdout + owner.stderr
