"""`create_app(source)`: the replay Hub as a FastAPI app.

To add a Hub surface (repo files, Spaces, an OpenID provider): write `hubpulse/hub/routes/<name>.py` with an
`APIRouter` named `router`, read shared state through `hubpulse.hub.responses.clock_of(request)`, and add
one line to `_ROUTERS` below.
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hubpulse.hub.clock import DayTimer, ReplayClock
from hubpulse.hub.faults import FaultConfig, FaultInjector, FaultMiddleware
from hubpulse.hub.live import HubGateMiddleware, LiveConfig, LiveState
from hubpulse.hub.responses import json_response
from hubpulse.hub.routes import models, oauth, replay, repos, spaces
from hubpulse.hub.source import DaySource, SyntheticSource, history_source
from hubpulse_common.synthetic import SyntheticHub

_ROUTERS: tuple[APIRouter, ...] = (
    repos.router,  # before models: its literal demo-repo paths must win
    spaces.router,
    models.router,
    replay.router,
    oauth.router,
)

Source = DaySource | SyntheticHub | Path | str


def as_source(source: Source) -> DaySource:
    if isinstance(source, SyntheticHub):
        return SyntheticSource(source)
    if isinstance(source, str | Path):
        return history_source(Path(source))
    return source


class ReplayDateMiddleware:
    """`Date` is the replayed day (at the current time of day), so clients date snapshots as this Hub's day,
    the way the ingestor dates them by huggingface.co's own `Date`. Servers run with uvicorn's date off."""

    def __init__(self, app: ASGIApp, clock: ReplayClock) -> None:
        self.app, self.clock = app, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                now = dt.datetime.now(dt.UTC)
                served = dt.datetime.combine(self.clock.current.cols.date, now.timetz())
                date = (b"date", format_datetime(served, usegmt=True).encode())
                message["headers"] = [*(h for h in message.get("headers", []) if h[0].lower() != b"date"), date]
            await send(message)

        await self.app(scope, receive, send_dated)


def create_app(
    source: Source,
    *,
    start_day: int = 0,
    faults: FaultConfig | None = None,
    page_size: int = 1000,
    live: LiveConfig | None = None,
    day_seconds: float | None = None,
) -> FastAPI:
    """source: a SyntheticHub, a history file path, or any DaySource; faults: the knobs at start;
    page_size: most models per /api/models page (huggingface.co: 1000); live: renames, private repos,
    tokens, moving scores and the rate limit at start (also set through POST /_replay/live); day_seconds: the
    demo clock (`DayTimer`, started here; `app.state.day_timer.stop()`), a synthetic source only."""
    clock = ReplayClock(as_source(source), start_day)
    timer = DayTimer(clock, day_seconds) if day_seconds else None
    injector = FaultInjector(faults)
    app = FastAPI(
        title="hubpulse replay Hub",
        description="The Hugging Face Hub API, replayed from history.",
        docs_url="/_replay/docs",
        openapi_url="/_replay/openapi.json",
        redoc_url=None,
    )
    app.state.clock = clock
    app.state.day_timer = timer.start() if timer else None
    app.state.faults = injector
    app.state.live = LiveState(live or LiveConfig())
    app.state.page_size = page_size
    for router in _ROUTERS:
        app.include_router(router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> object:
        return json_response({"status": "ready", "date": clock.current.cols.date.isoformat()})

    app.add_middleware(FaultMiddleware, injector=injector)
    app.add_middleware(HubGateMiddleware, live=app.state.live)
    app.add_middleware(ReplayDateMiddleware, clock=clock)
    return app


def synthetic_app(
    n_models: int, days: int, seed: int = 0, start_date: dt.date | None = None, faults: FaultConfig | None = None
) -> FastAPI:
    hub = SyntheticHub(n_models, days, seed=seed, start_date=start_date or dt.date(2025, 1, 1))
    return create_app(hub, faults=faults)
