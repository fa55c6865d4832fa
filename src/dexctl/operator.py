"""``dexctl operator``: render the CRDs from their pydantic source, run the operator."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The DEX operator: CRDs and the kopf controller.", no_args_is_help=True)


@app.command()
def crds(
    out: Path = typer.Option(None, help="Folder to write; default manifests/crd."),
    check: bool = typer.Option(False, help="Only check the YAML is current (exit 1 if not)."),
) -> None:
    """Write (or check) manifests/crd from dex_operator.crd.models."""
    from dex_operator.crd.__main__ import DEFAULT_DIR
    from dex_operator.crd.render import stale_files, write_all

    target = out or DEFAULT_DIR
    if check:
        stale = stale_files(target)
        if stale:
            typer.echo(f"stale: {', '.join(stale)}; run `dexctl operator crds`", err=True)
            raise typer.Exit(1)
        typer.echo("CRDs are current")
        return
    for path in write_all(target):
        typer.echo(str(path))


@app.command()
def run() -> None:
    """Run the operator against the cluster KUBECONFIG names (what the container runs)."""
    from dex_operator.__main__ import main

    main()
