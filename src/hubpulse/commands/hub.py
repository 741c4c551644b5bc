"""`hubpulse hub serve`: the replay Hub in the foreground."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Annotated

import typer

from hubpulse_common.errors import UserFacingError
from hubpulse_common.synthetic import MAX_MODELS

hub_app = typer.Typer(help="The replay Hub: the Hub's HTTP API served from history.", no_args_is_help=True)


def _start_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise UserFacingError(f"--start-date must be YYYY-MM-DD, got {text!r}") from exc


@hub_app.command("serve")
def serve(
    history: Annotated[Path | None, typer.Option(help="History file (CONTRACT format, CSV or gzip CSV).")] = None,
    synthetic: Annotated[int | None, typer.Option(help="Serve a synthetic Hub of N models instead.")] = None,
    days: Annotated[int, typer.Option(help="Days of synthetic history.")] = 30,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic Hub and of the fault generator.")] = 0,
    start_date: Annotated[str, typer.Option(help="First day of the synthetic Hub (YYYY-MM-DD).")] = "2025-01-01",
    rate_429: Annotated[float, typer.Option(help="Share of /api requests answered 429 (no Retry-After).")] = 0.0,
    rate_5xx: Annotated[float, typer.Option(help="Share of /api requests answered 500/502/503.")] = 0.0,
    quota: Annotated[
        int, typer.Option(help="Requests per 5-minute window per caller, with RateLimit headers (huggingface.co: 500).")
    ] = 0,
    day_seconds: Annotated[
        float,
        typer.Option(
            help="The demo clock (--synthetic): once the last day of history is served, the Hub makes and serves "
            "the next day every this many seconds (0: it stays on its last day)."
        ),
    ] = 0.0,
) -> None:
    """Serve GET /api/models, /api/models/{id}, /api/trending; POST /_replay/advance moves the day."""
    from hubpulse.hub.app import create_app
    from hubpulse.hub.demo_models import DEMO_MODELS, LIBRARY, DemoRepos, default_cache_dir
    from hubpulse.hub.faults import FaultConfig
    from hubpulse.hub.live import LiveConfig
    from hubpulse.hub.server import serve as run_server
    from hubpulse_common.synthetic import SyntheticHub

    if (history is None) == (synthetic is None):
        raise UserFacingError("give exactly one of --history FILE or --synthetic N")
    if not 1 <= port <= 65535:
        raise UserFacingError(f"--port must be between 1 and 65535, got {port}")
    for name, rate in (("--rate-429", rate_429), ("--rate-5xx", rate_5xx)):
        if not 0.0 <= rate <= 1.0:
            raise UserFacingError(f"{name} must be between 0 and 1, got {rate}")
    if quota < 0:
        raise UserFacingError(f"--quota must be 0 (off) or more, got {quota}")
    if not 0 <= day_seconds <= 86_400:
        raise UserFacingError(f"--day-seconds must be between 0 (off) and 86400, got {day_seconds:g}")
    if day_seconds and history is not None:
        raise UserFacingError("--day-seconds needs --synthetic: a history file ends with its last day")
    faults = FaultConfig(seed=seed, rate_429=rate_429, rate_5xx=rate_5xx)
    live = LiveConfig(quota=quota)
    if synthetic is not None:
        if not 1 <= synthetic <= MAX_MODELS:
            raise UserFacingError(f"--synthetic must be between 1 and {MAX_MODELS}, got {synthetic}")
        if not 1 <= days <= 3650:
            raise UserFacingError(f"--days must be between 1 and 3650, got {days}")
        # the demo models the replay serves as real repos are listed like any model (ingested, scored, searchable)
        featured = {repo_id: (m.pipeline_tag, LIBRARY) for repo_id, m in DEMO_MODELS.items()}
        hub = SyntheticHub(synthetic, days, seed=seed, start_date=_start_date(start_date), featured=featured)
        app = create_app(hub, faults=faults, live=live, day_seconds=day_seconds or None)
    else:
        assert history is not None
        app = create_app(history, faults=faults, live=live)
    # The demo models take seconds to build (transformers): do it while the platform starts, not on first use.
    app.state.demo_repos = DemoRepos(default_cache_dir())
    threading.Thread(target=app.state.demo_repos.warm, name="demo-models", daemon=True).start()
    typer.echo(f"replay Hub on http://{host}:{port}  (HF_ENDPOINT=http://{host}:{port})")
    run_server(app, host, port)


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
