"""Process entry point: ``python -m dex_serving.run {predictor,transformer,monitor} ...``.

Arguments are parsed here, before ``kserve`` is imported (it parses ``sys.argv`` itself at
import time); this module therefore imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import BaseModel, ValidationError

# One OpenMP thread per server process: a one-row tree-model predict is ~4x faster without
# thread hand-off, and scaling out is KServe's job (replicas), not OpenMP's. Set before
# scikit-learn loads its OpenMP runtime.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from dex_serving import logs
from dex_serving.settings import (
    MonitorSettings,
    PredictorSettings,
    TransformerSettings,
    flags,
)

log = logging.getLogger("dex.serving")

Settings = PredictorSettings | TransformerSettings | MonitorSettings
ROLES: dict[str, type[Settings]] = {
    "predictor": PredictorSettings,
    "transformer": TransformerSettings,
    "monitor": MonitorSettings,
}


def _add_fields(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One option per settings field: flags, default and help come from the model; values
    are validated by the model, not here (argparse only splits the words)."""
    for name, field in model.model_fields.items():
        required = field.is_required()
        spellings = flags(name, field)
        parser.add_argument(
            *spellings,
            dest=name,
            metavar=spellings[0].lstrip("-").replace("-", "_").upper(),
            required=required,
            default=argparse.SUPPRESS,
            help=f"{field.description or ''} (default: {field.default})".strip()
            if not required
            else field.description,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dex_serving.run", allow_abbrev=False)
    sub = parser.add_subparsers(dest="role", required=True)
    for role, model in ROLES.items():
        _add_fields(sub.add_parser(role, allow_abbrev=False), model)
    return parser


def settings_from(argv: Sequence[str] | None) -> Settings:
    parser = build_parser()
    values = vars(parser.parse_args(argv))
    model = ROLES[values.pop("role")]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        # A usage error naming the flag, as argparse reports its own (exit code 2).
        fields = model.model_fields
        problems = "; ".join(
            f"{flags(str(e['loc'][0]), fields[str(e['loc'][0])])[0]}: {e['msg']}"
            if e["loc"] and str(e["loc"][0]) in fields
            else e["msg"]
            for e in exc.errors()
        )
        parser.error(problems)


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from(argv)
    role = next(name for name, model in ROLES.items() if type(settings) is model)
    logs.configure(role)
    logs.silence_library_warnings()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from dex_serving.kserve_server import isolate_argv

    isolate_argv()
    try:
        if isinstance(settings, PredictorSettings):
            from dex_serving import predictor

            predictor.serve(settings)
        elif isinstance(settings, TransformerSettings):
            from dex_serving import transformer

            transformer.serve(settings)
        else:
            from dex_serving.monitor import service

            service.serve(settings)
    except Exception as exc:
        # One readable line saying why the process refuses to start (e.g. a contract mismatch).
        log.error(logs.kv(f"{role} failed to start", error=f"{type(exc).__name__}: {exc}"))
        log.debug("traceback", exc_info=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
