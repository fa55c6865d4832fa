"""dexctl tells DEX's story; libraries' prints, progress bars and warnings go to a log file.

Feast, MLflow and SQLAlchemy print progress and emit deprecation/experimental warnings that a
dexctl user cannot act on. Warning filters do not hold them back: Feast installs its own
``warnings.simplefilter("once", ...)`` at import, ahead of ours. So warnings are routed by
*where they are raised*: from DEX's own packages they are shown as usual, from anything else
they are written to the log. Library stdout/stderr is redirected around the calls that print.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from dex.settings import DexSettings

_OWN = ("dex", "dexctl", "dex_components", "dex_pipelines", "dex_serving", "dex_operator")
_log_path: Path | None = None
_show_default = warnings.showwarning


def _is_ours(filename: str) -> bool:
    parts = Path(filename).parts
    return any(part in _OWN for part in parts) and "site-packages" not in parts


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if _log_path is None or _is_ours(filename):
        _show_default(message, category, filename, lineno, file, line)
        return
    with _log_path.open("a", encoding="utf-8") as log:
        log.write(warnings.formatwarning(message, category, filename, lineno, line))


def libraries_log(settings: DexSettings) -> Path:
    """Where library output goes: next to the pipeline and serving logs."""
    return settings.state / "logs" / "libraries.log"


def route_library_warnings(log_path: Path) -> None:
    """From now on, warnings raised outside DEX's packages go to ``log_path``."""
    global _log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _log_path = log_path
    warnings.showwarning = _show


@contextlib.contextmanager
def library_output(log_path: Path) -> Iterator[None]:
    """Send what the wrapped library calls print (stdout and stderr) to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        log_path.open("a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        yield
    sys.stdout.flush()
