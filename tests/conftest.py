"""Suite-wide guards.

In CI (``CI=true``) a skipped test is a failure: integration tests exist to run against
real servers, and a skip would let a missing Prometheus or control plane pass silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True)
def _mlflow_settings_stay_with_their_test() -> Iterator[None]:
    """``mlflow.set_tracking_uri``/``set_registry_uri`` export ``MLFLOW_*`` variables: left
    behind, they send the processes later tests of this worker start to that test's stores
    (a cluster test once registered its model in another test's SQLite registry)."""
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(before)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _in_ci() or hasattr(session.config, "workerinput"):
        return  # only the controller decides, once, over all workers' reports
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        names = ", ".join(sorted({r.nodeid for r in skipped})[:20])
        if reporter:
            reporter.write_line(f"CI=true and {len(skipped)} tests skipped: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
