"""`dexctl pipeline run NAME --help` lists the pipeline's parameters; unknown ones are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dexctl.main import app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DEX_PROJECT_FILE", raising=False)
    monkeypatch.setenv("DEX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_run_help_lists_parameters_with_types_and_defaults(runner: CliRunner) -> None:
    result = runner.invoke(app, ["pipeline", "run", "training", "--help"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "Integer" in rows["n_trials"]
    assert "20" in rows["n_trials"]
    assert "'auto'" in rows["task"]
    assert "(required)" in rows["entity_source"]


def test_unknown_parameter_is_refused_naming_it(runner: CliRunner) -> None:
    result = runner.invoke(app, ["pipeline", "run", "training", "-p", "n_trails=3"])
    assert result.exit_code == 2
    assert "unknown parameter 'n_trails'" in result.output
