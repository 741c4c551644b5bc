"""The metrics service's request dependencies: the one `MetricsState` its lifespan (the composition root, `app.py`)
opens, and `Annotated` aliases for routes. The caller's identity comes from `hubpulse_common.identity`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pymongo.asynchronous.database import AsyncDatabase
from starlette.requests import HTTPConnection

from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches.delivery import Deliverer


@dataclass(frozen=True)
class MetricsState:
    """Everything the lifespan opened, for the length of the app (`app.state.metrics`)."""

    db: AsyncDatabase[dict[str, Any]]
    settings: MetricsSettings
    deliverer: Deliverer


def state_of(connection: HTTPConnection) -> MetricsState:
    """The app's state, for a request or a WebSocket."""
    state: MetricsState = connection.app.state.metrics
    return state


async def _state(request: Request) -> MetricsState:
    return state_of(request)


MetricsDep = Annotated[MetricsState, Depends(_state)]
