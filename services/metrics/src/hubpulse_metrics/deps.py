"""The metrics service's request dependencies: the one `MetricsState` its lifespan (the composition root, `app.py`)
opens, and `Annotated` aliases for routes. The caller's identity comes from `hubpulse_common.identity`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from pymongo.asynchronous.database import AsyncDatabase

from hubpulse_common.http import AppState
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches.delivery import Deliverer


@dataclass(frozen=True)
class MetricsState:
    """Everything the lifespan opened, for the length of the app (`app.state.metrics`)."""

    db: AsyncDatabase[dict[str, Any]]
    settings: MetricsSettings
    deliverer: Deliverer


METRICS_STATE: AppState[MetricsState] = AppState("metrics")
state_of = METRICS_STATE.of  # for a request or a WebSocket
MetricsDep = Annotated[MetricsState, Depends(METRICS_STATE)]
