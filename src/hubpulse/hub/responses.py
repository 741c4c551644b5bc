"""Response helpers shared by the replay Hub's routes."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from hubpulse.hub.clock import ReplayClock
from hubpulse.hub.faults import FaultInjector
from hubpulse.hub.live import LiveState


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    try:
        body = orjson.dumps(content)
    except TypeError:  # integers past 64 bits, which JSON (and huggingface.co) can carry: the slow encoder
        body = json.dumps(content, separators=(",", ":")).encode()
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


def hub_error(status_code: int, message: str, error_code: str | None = None) -> Response:
    """huggingface.co's error shape: {"error": message}, with X-Error-Code that huggingface_hub maps to exceptions."""
    headers = {"X-Error-Code": error_code, "X-Error-Message": message} if error_code else None
    return json_response({"error": message}, status_code, headers)


def api_error(status_code: int, code: str, message: str) -> Response:
    """The project's error shape (CONTRACT) for the replay control routes."""
    return json_response({"error": {"code": code, "message": message}}, status_code)


class Refused(Exception):
    """Raised by a route's dependency to answer with `response` (an hub_error or api_error) instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def refused(request: Request, exc: Exception) -> Response:
    """The app's handler for Refused."""
    assert isinstance(exc, Refused)
    return exc.response


def clock_of(request: Request) -> ReplayClock:
    clock: ReplayClock = request.app.state.clock
    return clock


def faults_of(request: Request) -> FaultInjector:
    faults: FaultInjector = request.app.state.faults
    return faults


def live_of(request: Request) -> LiveState:
    live: LiveState = request.app.state.live
    return live
