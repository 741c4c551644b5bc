"""HTTP: the state of ingestion cycles."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Query, Request

from hubpulse_common.http import NotFound
from hubpulse_common.resources import Resources
from hubpulse_ingestor import repository
from hubpulse_ingestor.schemas import Cycle

router = APIRouter(prefix="/cycles", tags=["cycles"])


def _pool(request: Request) -> asyncpg.Pool:
    resources: Resources = request.app.state.resources
    return resources.require_pool()


@router.get("/latest", response_model=Cycle, summary="The most recent ingestion cycle (running or finished)")
async def latest(request: Request) -> dict[str, Any]:
    cycle: dict[str, Any] | None = await repository.latest_cycle(_pool(request))
    if cycle is None:
        raise NotFound("no ingestion cycle has run yet")
    return cycle


@router.post("", status_code=202, summary="Start a cycle now (or right after the one running)")
async def trigger(request: Request) -> dict[str, str]:
    request.app.state.wake.set()
    return {"status": "scheduled"}


@router.get("", response_model=list[Cycle], summary="Recent ingestion cycles, newest first")
async def recent(request: Request, limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
    cycles: list[dict[str, Any]] = await repository.recent_cycles(_pool(request), limit)
    return cycles
