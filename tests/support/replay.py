"""A replay Hub serving a synthetic Hub in a thread, for the areas that test against one (hub, ingestor).

An area's conftest makes its session server with `replay_server_fixture(...)` and imports `replay`, the
per-test view of it that resets faults, live mode and the day after each test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from hubpulse.hub import RunningHub, create_app, start_in_thread
from hubpulse_common.synthetic import SyntheticHub


@dataclass
class Replay:
    hub: SyntheticHub
    run: RunningHub

    @property
    def url(self) -> str:
        return self.run.url

    def post(self, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        response = httpx.post(self.url + path, json=body or {}, timeout=30)
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data

    def day(self, d: int = 0) -> dt.date:
        return self.hub.dates[d]

    def models(self, d: int = 0) -> int:
        """Models on the Hub that day (new ones keep appearing, so fewer than the Hub's total early on)."""
        return len(self.hub.day(d))

    def reset(self) -> None:
        self.post("/_replay/faults", {})
        self.post("/_replay/live", {})
        self.post("/_replay/reset", {})


def replay_server_fixture(models: int, days: int, *, seed: int, page_size: int) -> Callable[[], Iterator[Replay]]:
    """A session fixture (assign it to `replay_server` in a conftest) serving a synthetic Hub of that size."""

    @pytest.fixture(scope="session", name="replay_server")
    def serve() -> Iterator[Replay]:
        hub = SyntheticHub(models, days, seed=seed)
        run = start_in_thread(create_app(hub, page_size=page_size))
        yield Replay(hub=hub, run=run)
        run.stop()

    return serve


@pytest.fixture
def replay(replay_server: Replay) -> Iterator[Replay]:
    yield replay_server
    replay_server.reset()
