"""Operator settings from DEX_* variables, and the log level they apply."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from dex_operator.__main__ import configure_logging
from dex_operator.config import OperatorConfig


def test_log_level_defaults_to_info_and_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEX_LOG_LEVEL", raising=False)
    assert OperatorConfig().log_level == "INFO"
    monkeypatch.setenv("DEX_LOG_LEVEL", "debug")
    assert OperatorConfig().log_level == "DEBUG"
    monkeypatch.setenv("DEX_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="log_level"):
        OperatorConfig()


@pytest.mark.parametrize(
    ("level", "ours", "kopf_objects"),
    [("DEBUG", logging.DEBUG, logging.INFO), ("INFO", logging.INFO, logging.WARNING)],
)
def test_configure_logging_applies_the_level(level: str, ours: int, kopf_objects: int) -> None:
    root, aio = logging.getLogger(), logging.getLogger("asyncio")
    saved = (root.level, list(root.handlers), aio.propagate, list(aio.handlers))
    try:
        configure_logging(level)
        assert logging.getLogger("dex_operator").level == ours
        assert logging.getLogger("kopf.objects").level == kopf_objects
    finally:
        root.setLevel(saved[0])
        root.handlers[:], aio.propagate, aio.handlers[:] = saved[1], saved[2], saved[3]
