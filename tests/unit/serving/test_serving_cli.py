"""`dexctl serve` and `dexctl monitor` are registered and document their knobs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dexctl.main import app


def test_serve_and_monitor_commands_are_registered() -> None:
    runner = CliRunner()
    serve = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert serve.exit_code == 0, serve.output
    for option in (
        "--alias",
        "--version",
        "--protocol",
        "--feature-component",
        "--threshold",
        "--drift-share",
        "--trigger",
    ):
        assert option in serve.output
    monitor = runner.invoke(app, ["monitor", "--help"], env={"COLUMNS": "200"})
    assert monitor.exit_code == 0, monitor.output
    for option in ("--window", "--method", "--threshold", "--cooldown"):
        assert option in monitor.output


def test_run_accepts_the_flags_kserve_appends_to_custom_containers() -> None:
    from dex_serving.run import settings_from
    from dex_serving.settings import TransformerSettings

    settings = settings_from(
        [
            "transformer", "--model=models:/churn/3", "--feature-repo=/repo",
            "--predictor-host=churn-predictor.ns", "--port=8080",
            "--model_name", "churn", "--predictor_host", "churn-predictor.ns", "--http_port", "8080",
        ]
    )  # fmt: skip
    assert isinstance(settings, TransformerSettings)
    assert (settings.served_name, settings.predictor_host, settings.http_port) == (
        "churn",
        "churn-predictor.ns",
        8080,
    )


def test_feast_servers_come_together_or_not_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    from dex_serving.run import settings_from

    base = ["transformer", "--model=models:/churn/3", "--feature-repo=/repo", "--predictor-host=p"]
    with pytest.raises(SystemExit):
        settings_from([*base, "--feast-registry-server=dex-feast.dex-system:6570"])
    assert "--feast-registry-server and --feast-feature-server go together" in (
        capsys.readouterr().err
    )
    both = settings_from(
        [
            *base,
            "--feast-registry-server=dex-feast.dex-system:6570",
            "--feast-feature-server=http://dex-feast.dex-system:6566",
        ]
    )
    assert both.feast_feature_server == "http://dex-feast.dex-system:6566"  # type: ignore[union-attr]


def test_serve_refuses_an_unknown_feature_component() -> None:
    result = CliRunner().invoke(
        app, ["serve", "--feature-component", "explainer"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    assert "--feature-component" in result.output
    assert "must be transformer or predictor" in result.output
