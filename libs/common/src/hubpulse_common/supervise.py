"""Background tasks that cannot die silently: each is restarted with backoff and reported by /readyz.

    scheduler = supervise(app, "ingest-scheduler", lambda: run_scheduler(...))
    async with background(scheduler):  # hubpulse_common.resources: stops it on the way out
        yield

A task that raises is logged with its exception and started again after an exponential, jittered wait;
while it waits, until a restarted run has lasted `settle_s`, and before it was ever started, its readiness
check `task:<name>` is down, naming the error (a task failing at once on every restart never looks healthy).
A task that returns has finished its work (a one-shot start-up step): that is not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from hubpulse_common.http import add_readiness_probe
from hubpulse_common.logging import get_logger

log = get_logger(__name__)

Health = Callable[[], str | None]


class TaskDown(RuntimeError):
    """What a supervised task's readiness check raises: /readyz shows the message."""


class Supervised:
    """One named background task, restarted with backoff whenever it raises.

    `health` (optional) reports a problem the task is riding out without raising (e.g. a consumer retrying a
    transient failure): a string makes the readiness check fail with it, None means healthy.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        health: Health | None = None,
        initial_wait_s: float = 0.5,
        max_wait_s: float = 30.0,
        settle_s: float = 5.0,
    ) -> None:
        self.name = name
        self.restarts = 0
        self._run = run
        self._health = health
        self._wait = wait_exponential_jitter(multiplier=initial_wait_s, max=max_wait_s, jitter=initial_wait_s)
        self._settle_s = settle_s
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None  # the last exception, until a run outlives settle_s or returns
        self._running_since: float | None = None  # None while waiting to restart

    def start(self) -> None:
        """Start the task (again, if it finished); a running task is left alone."""
        if self._task is None or self._task.done():
            self._failure = None
            self._task = asyncio.create_task(self._supervise(), name=self.name)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _supervise(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception), wait=self._wait, before_sleep=self._restarting, reraise=True
        ):
            with attempt:
                self._running_since = time.monotonic()
                await self._run()
                self._failure = None  # a restarted one-shot task that now finished is healthy

    def _restarting(self, state: RetryCallState) -> None:
        assert state.outcome is not None
        assert state.next_action is not None
        exc = state.outcome.exception()
        self.restarts += 1
        self._running_since = None
        self._failure = f"{type(exc).__name__}: {exc}"[:300]
        log.error(
            "task.restarting",
            task=self.name,
            restarts=self.restarts,
            wait_s=round(state.next_action.sleep, 2),
            error=f"{type(exc).__name__}: {exc}"[:500],
            exc_info=exc,
        )

    async def check(self) -> None:
        """Readiness: raise `TaskDown` unless the task is running (or finished) and healthy."""
        if self._task is None:
            raise TaskDown("not started")
        if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
            raise TaskDown(f"stopped: {self._task.exception()!r}"[:300])
        if self._failure is not None and (
            self._running_since is None or time.monotonic() - self._running_since < self._settle_s
        ):
            raise TaskDown(f"restarting after {self._failure}")
        problem = self._health() if self._health is not None else None
        if problem is not None:
            raise TaskDown(problem[:300])

    async def join(self) -> None:
        """Wait for the task to return by itself (it was told to stop some other way)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def report(app: FastAPI, *tasks: Supervised) -> None:
    """Make /readyz check each task, as `task:<name>`."""
    for task in tasks:
        add_readiness_probe(app, f"task:{task.name}", task.check)


def supervise(
    app: FastAPI, name: str, run: Callable[[], Awaitable[None]], *, health: Health | None = None
) -> Supervised:
    """Start `run` as a supervised task reported by /readyz; stop it with `resources.background`."""
    task = Supervised(name, run, health=health)
    task.start()
    report(app, task)
    return task
