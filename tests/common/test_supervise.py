"""Supervised background tasks: restarted with backoff when they raise, and reported by /readyz meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from hubpulse_common.http import create_service_app
from hubpulse_common.resources import background
from hubpulse_common.supervise import Supervised, report, supervise


async def _readyz(app: FastAPI) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/readyz")
        return response.status_code, response.json()


async def _until_readyz(app: FastAPI, status: int, timeout_s: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        code, body = await _readyz(app)
        if code == status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/readyz never answered {status}; last: {code} {body}")
        await asyncio.sleep(0.05)


async def test_a_task_that_raises_is_restarted_and_readyz_names_it_until_it_settles() -> None:
    runs = {"n": 0}
    recovered = asyncio.Event()

    async def flaky() -> None:
        runs["n"] += 1
        if runs["n"] <= 2:
            raise ConnectionRefusedError(111, "the database system is shutting down")
        recovered.set()
        await asyncio.Event().wait()  # runs for good from now on

    holder: dict[str, Supervised] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder["task"] = task = Supervised("flaky", flaky, initial_wait_s=0.05, max_wait_s=0.2, settle_s=0.5)
        task.start()
        report(app, task)
        async with background(task):
            yield

    app = create_service_app(service="test", title="test", lifespan=lifespan)
    async with app.router.lifespan_context(app):
        body = await _until_readyz(app, 503)
        assert body["checks"]["task:flaky"].startswith("down: TaskDown: restarting after ConnectionRefusedError")
        await asyncio.wait_for(recovered.wait(), 30)
        # still "restarting" until the third run has lasted settle_s, then ready
        body = await _until_readyz(app, 200)
        assert body["checks"] == {"task:flaky": "ok"}
        assert holder["task"].restarts == 2
        assert holder["task"].running
    assert not holder["task"].running  # the lifespan stopped it


async def test_a_task_failing_on_every_restart_never_looks_ready() -> None:
    app = create_service_app(service="test", title="test")

    async def broken() -> None:
        raise RuntimeError("corrupt artifact")

    task = supervise(app, "broken", broken)
    try:
        for _ in range(20):
            code, body = await _readyz(app)
            assert code == 503
            assert "corrupt artifact" in body["checks"]["task:broken"] or "not started" in body["checks"]["task:broken"]
            await asyncio.sleep(0.05)
        assert task.restarts >= 1
    finally:
        await task.stop()


async def test_a_one_shot_task_that_finishes_is_healthy() -> None:
    app = create_service_app(service="test", title="test")
    done = asyncio.Event()

    async def once() -> None:
        done.set()

    task = supervise(app, "once", once)
    await asyncio.wait_for(done.wait(), 10)
    await _until_readyz(app, 200)
    assert not task.running
    assert task.restarts == 0
