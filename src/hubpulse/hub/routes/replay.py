"""Control routes: the day clock (`/_replay/state`, `/advance`, `/reset`) and the fault knobs (`/_replay/faults`)."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hubpulse.hub.clock import DayOutOfRange
from hubpulse.hub.faults import FaultConfig
from hubpulse.hub.live import LiveConfig
from hubpulse.hub.responses import api_error, clock_of, faults_of, json_response, live_of

router = APIRouter(prefix="/_replay")
M = TypeVar("M", bound=BaseModel)


class Advance(BaseModel):
    days: int = Field(1, ge=1, le=3650)  # past the history a synthetic Hub makes each day: not unbounded
    date: dt.date | None = None  # jump straight to this date instead


class Reset(BaseModel):
    day: int = Field(0, ge=0)


def _state(request: Request) -> dict[str, object]:
    timer = request.app.state.day_timer
    day_seconds = timer.day_seconds if timer is not None else None
    return {**clock_of(request).state(), "day_seconds": day_seconds, "faults": faults_of(request).state()}


async def _body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    return model.model_validate_json(raw) if raw.strip() else model()


@router.get("/state")
def state(request: Request) -> Response:
    return json_response(_state(request))


@router.post("/advance")
async def advance(request: Request) -> Response:
    try:
        body = await _body(request, Advance)
    except ValidationError as exc:
        return api_error(422, "invalid_body", str(exc.errors()[0]["msg"]))
    clock = clock_of(request)
    if body.date is not None:
        if body.date not in clock.source.dates:
            return api_error(409, "no_such_day", f"{body.date} is not a day of this replay")
        target = clock.source.dates.index(body.date)
    else:
        target = clock.current.day + body.days
    try:
        # building a 2M-model day takes about a second: keep it off the event loop
        await run_in_threadpool(clock.go_to, target)
    except DayOutOfRange:
        return api_error(409, "end_of_history", f"day {target} is past the last day ({clock.n_days - 1})")
    return json_response(_state(request))


@router.post("/reset")
async def reset(request: Request) -> Response:
    try:
        body = await _body(request, Reset)
    except ValidationError as exc:
        return api_error(422, "invalid_body", str(exc.errors()[0]["msg"]))
    try:
        await run_in_threadpool(clock_of(request).go_to, body.day)
    except DayOutOfRange as exc:
        return api_error(409, "no_such_day", str(exc))
    return json_response(_state(request))


@router.get("/faults")
def get_faults(request: Request) -> Response:
    return json_response(faults_of(request).state())


@router.post("/faults")
async def set_faults(request: Request) -> Response:
    """Replaces every knob (unset ones return to their defaults) and re-seeds the generator."""
    try:
        config = await _body(request, FaultConfig)
    except ValidationError as exc:
        return api_error(422, "invalid_body", str(exc.errors()[0]["msg"]))
    faults_of(request).configure(config)
    return json_response(faults_of(request).state())


@router.get("/live")
def get_live(request: Request) -> Response:
    return json_response(live_of(request).config.model_dump())


@router.post("/live")
async def set_live(request: Request) -> Response:
    """Replaces the live behaviours (renames, private repos, tokens, score moves, quota); `{}` turns them off."""
    try:
        config = await _body(request, LiveConfig)
    except ValidationError as exc:
        return api_error(422, "invalid_body", str(exc.errors()[0]["msg"]))
    live_of(request).configure(config)
    return json_response(live_of(request).config.model_dump())
