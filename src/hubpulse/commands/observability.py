"""`hubpulse observability generate`: the Grafana dashboards, their ConfigMaps and the PrometheusRule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hubpulse_common.errors import UserFacingError

console = Console(stderr=True)
observability_app = typer.Typer(
    help="Dashboards and alert rules for the people who run hubpulse.", no_args_is_help=True
)


@observability_app.command("generate")
def generate(
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; fail when a generated file is out of date")
    ] = False,
    root: Annotated[Path, typer.Option("--root", help="the repository checkout (holds deploy/)")] = Path(),
) -> None:
    """Write deploy/grafana/dashboards/*.json and deploy/k8s/base/monitoring/{dashboards,prometheusrule}.yaml."""
    from hubpulse.observability import generate as gen

    if not (root / gen.RULES).is_file():
        raise UserFacingError(f"{root / gen.RULES} not found: run this from the repository root or pass --root")
    if check:
        if changed := gen.stale(root):
            names = ", ".join(str(p) for p in changed)
            raise UserFacingError(f"out of date: {names}; run `hubpulse observability generate`")
        console.print("generated monitoring files are up to date")
        return
    for path in gen.write(root):
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(observability_app, name="observability")
