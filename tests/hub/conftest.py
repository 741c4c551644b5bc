"""A replay Hub on a free localhost port, shared by the module's tests; state is reset after each test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from hubpulse.hub import RunningHub, create_app, start_in_thread
from hubpulse_common.synthetic import SyntheticHub

N_MODELS, DAYS, PAGE = 2500, 20, 100


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


@pytest.fixture(scope="session")
def replay_server() -> Iterator[Replay]:
    hub = SyntheticHub(N_MODELS, DAYS, seed=7)
    run = start_in_thread(create_app(hub, page_size=PAGE))
    yield Replay(hub=hub, run=run)
    run.stop()


@pytest.fixture
def replay(replay_server: Replay) -> Iterator[Replay]:
    yield replay_server
    replay_server.post("/_replay/faults", {})
    replay_server.post("/_replay/live", {})
    replay_server.post("/_replay/reset", {})


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub's backoff sleeps; record the waits instead of spending them."""
    import time

    import huggingface_hub.utils._http as hf_http

    waits: list[float] = []
    monkeypatch.setattr(hf_http, "time", type("Clock", (), {"sleep": staticmethod(waits.append), "time": time.time}))
    return waits
