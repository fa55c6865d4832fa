"""Helpers for the GitOps tests: real ``kubectl kustomize`` rendering, and an Argo CD-faithful
runner for the Lua health checks (a real Lua 5.1 through lupa)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel

from dex_testing import SOURCE_ROOT

REPO = SOURCE_ROOT
KUSTOMIZE = REPO / "kustomize"
HEALTH_DIR = KUSTOMIZE / "argocd" / "health"
ENVS = ("dev", "staging", "prod")

Manifest = dict[str, Any]


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        # kubectl is a stated prerequisite (`make envtest` links or builds one).
        pytest.fail("kubectl not on PATH: install it or run `make envtest`")
    return found


def kustomize(path: Path) -> list[Manifest]:
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# ----------------------------------------------------------------------- Argo CD Lua runner

HealthCode = Literal["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"]


class Health(BaseModel):
    """Argo CD's HealthStatus: what it unmarshals the script's returned table into."""

    status: HealthCode
    message: str = ""


# What Argo CD's sandbox leaves out: for argocd-cm scripts (useOpenLibs false) gopher-lua
# opens only package, base, table and a safe os (time/date), so string/math calls fail there.
_SANDBOX = """
debug.setmetatable("", nil)
local safe_os = {time = os.time, date = os.date}
string, math, io, debug, coroutine, python = nil, nil, nil, nil, nil, nil
os = safe_os
"""


def _to_lua(lua: Any, value: Any) -> Any:
    """Python (decoded JSON) to Lua values the way Argo CD's ``decodeValue`` does: objects
    become tables with string keys, arrays 1-based sequences, null nil, numbers doubles."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            table[key] = _to_lua(lua, item)
        return table
    if isinstance(value, list):
        return lua.table(*[_to_lua(lua, item) for item in value])
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a JSON value: {value!r}")


def run_health_lua(script: str, obj: Manifest) -> Health:
    """Run one health script against one object as Argo CD's ``ExecuteHealthLua`` does."""
    from lupa import lua51  # gopher-lua implements Lua 5.1

    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    lua.execute(_SANDBOX)
    lua.globals().obj = _to_lua(lua, obj)
    returned = lua.execute(script)
    assert lua51.lua_type(returned) == "table", f"health script returned {returned!r}"
    fields = dict(returned.items())
    assert set(fields) <= {"status", "message"}, fields
    assert all(isinstance(v, str) for v in fields.values()), fields
    return Health.model_validate(fields)
