"""A replay Hub on a free localhost port, shared by the module's tests; state is reset after each test."""

from __future__ import annotations

import pytest
from support.replay import Replay, replay, replay_server_fixture

__all__ = ["Replay", "replay"]

N_MODELS, DAYS, PAGE = 2500, 20, 100


replay_server = replay_server_fixture(N_MODELS, DAYS, seed=7, page_size=PAGE)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub's backoff sleeps; record the waits instead of spending them."""
    import time

    import huggingface_hub.utils._http as hf_http

    waits: list[float] = []
    monkeypatch.setattr(hf_http, "time", type("Clock", (), {"sleep": staticmethod(waits.append), "time": time.time}))
    return waits
