"""``python -m dexctl``: the same CLI, for callers that know the interpreter but not PATH."""

from dexctl.main import app

app()
