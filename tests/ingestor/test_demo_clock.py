"""The demo clock: past its history, a replay Hub with a day timer makes the next day, and a cycle stores it."""

from __future__ import annotations

import time

import httpx
import pytest

from hubpulse.hub import create_app, start_in_thread
from hubpulse_common.settings import load_settings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_ingestor import repository
from hubpulse_ingestor.cycle import run_cycle
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_ingestor.standalone import open_stores

from .conftest import Replay, Store, ingestor_env


async def test_the_hub_moves_on_after_its_history_and_a_cycle_stores_the_new_day(
    database_url: str, kafka: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = SyntheticHub(400, 1, seed=6)  # one day of history: the timer acts at once
    last = hub.dates[-1]
    app = create_app(hub, page_size=100, day_seconds=0.5)
    run = start_in_thread(app)
    try:
        deadline = time.monotonic() + 30
        while httpx.get(f"{run.url}/_replay/state").json()["day"] < 1:
            assert time.monotonic() < deadline, "the demo clock did not move"
            time.sleep(0.1)
        app.state.day_timer.stop()  # one new day is enough; a walk must not straddle the next
        state = httpx.get(f"{run.url}/_replay/state").json()
        assert state["day_seconds"] == 0.5
        served = hub.dates[state["day"]]
        assert served > last

        for key, value in ingestor_env(Replay(hub=hub, run=run), database_url, kafka).items():
            monkeypatch.setenv(key, value)
        settings = load_settings(IngestorSettings)
        async with open_stores(settings) as (pool, bus):
            result = await run_cycle(pool, bus, settings)
            # dated by the Hub's Date header: the replayed day it was observed on, not the wall clock's
            assert result.snapshot_date == served
            expected = hub.day(state["day"])
            assert await repository.count_snapshots(pool, served) == (len(expected), len(expected))
            stored = {r["model_id"] for r in await pool.fetch("SELECT model_id FROM snapshots")}
        # models created after the history joined the Hub, and the pipeline has them
        history_ids = set(SyntheticHub(400, 1, seed=6).day(0)["model_id"])
        new = set(expected["model_id"]) - history_ids
        assert new, "no new model on the new day"
        assert new <= stored
    finally:
        run.stop()
