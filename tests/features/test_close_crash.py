"""A day's close that dies after publishing part of the day (a kill -9 between its slices) leaves the day open
and its stream intact; the retry closes each model-day once, the latest write of each (a redelivered batch and a
re-ingested model-day were streamed twice), and republishes the same events."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pytest

from features.support import features_frame, fetch, hub_snapshots, received, stored_features_truth
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import ModelFeaturesPacked
from hubpulse_common.features import FEATURE_COLUMNS
from hubpulse_common.kafka import EventBus
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker


def _rows(published: Iterable[tuple[bytes, bytes]], prefix: str) -> list[tuple[str, dict[str, object]]]:
    """Our model-days in the published hub.features.v3 messages (model id, the row's v1 event without its publishing
    time), in order; the day also holds other tests' models."""
    rows = [row for _, value in published for row in ModelFeaturesPacked.model_validate_json(value).as_v1()]
    return [(r.model_id, r.model_dump(exclude={"occurred_at"})) for r in rows if r.model_id.startswith(prefix)]


class Killed(Exception):
    pass


class DiesAfterOneSlice(EventBus):
    """The real bus, recording what it publishes; the process 'dies' (its connections end) at the second slice."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, client_id="features-close-crash-test")
        self.alive = False
        self.published: list[tuple[bytes, bytes]] = []

    async def publish_encoded(
        self, topic: str, items: Iterable[tuple[bytes, bytes]], *, trace_id: str | None = None
    ) -> int:
        pairs = list(items)
        if not self.alive and self.published:
            raise Killed("killed between two slices of the close")
        self.published += pairs
        return await super().publish_encoded(topic, pairs, trace_id=trace_id)


async def test_a_close_killed_midway_closes_nothing_and_its_retry_publishes_each_model_day_once(
    service_env, database_url, monkeypatch
) -> None:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    monkeypatch.setattr(repository, "CLOSE_SLICE_BYTES", 20_000)  # several slices for a small day
    bus = DiesAfterOneSlice(service_env["HUBPULSE_KAFKA_BOOTSTRAP"])
    await bus.start()
    pool = await create_pool(database_url)
    prefix = f"cc{uuid.uuid4().hex[:6]}-"
    try:
        await repository.ensure_feature_set(pool)
        worker = FeaturesWorker(pool, bus)
        events = hub_snapshots(SyntheticHub(300, 1, seed=8), 0, prefix)
        day = events[0].snapshot_date
        await worker.handle(received(events))
        await worker.handle(received(events[:100]))  # a redelivered batch
        reingested = [e.model_copy(update={"downloads": e.downloads + 7}) for e in events[-50:]]
        await worker.handle(received(reingested))  # re-ingested with new counts: the latest write wins

        with pytest.raises(BaseExceptionGroup) as failure:
            await worker.close_day(day)
        assert failure.group_contains(Killed)
        assert bus.published, "the close died before publishing: the test proves nothing"
        finals = "SELECT count(*) AS n FROM feature_rows WHERE model_id LIKE $1 AND NOT provisional"
        assert (await fetch(database_url, finals, prefix + "%"))[0]["n"] == 0
        streamed = "SELECT count(*) AS n FROM feature_stream WHERE model_id LIKE $1"
        assert (await fetch(database_url, streamed, prefix + "%"))[0]["n"] == len(events) + 150
        first_run = dict(_rows(bus.published, prefix))

        bus.alive, bus.published = True, []
        day_models = await worker.close_day(day)
        assert day_models >= len(events)  # the day also holds earlier tests' models (one shared database)
        assert (await fetch(database_url, streamed, prefix + "%"))[0]["n"] == len(events) + 150, "the stream stays"
        published = _rows(bus.published, prefix)
        ours = dict(published)
        assert len(ours) == len(events) == len(published)  # each model-day once
        again = [k for k in first_run if k in ours]
        assert again, "no model of ours was in the first slice"
        assert all(ours[k] == first_run[k] for k in again), "the retry published other events"

        rows = await fetch(database_url, finals, prefix + "%")
        assert rows[0]["n"] == len(events)  # one row per model-day, the latest write of each
        # what the retry published is the batch truth, the latest write of each model-day included
        events_out = [
            row
            for _, value in bus.published
            for row in ModelFeaturesPacked.model_validate_json(value).as_v1()
            if row.model_id.startswith(prefix)
        ]
        got = features_frame(events_out)
        truth = (await stored_features_truth(database_url)).set_index(["snapshot_date", "model_id"])
        keys = pd.MultiIndex.from_arrays([got["snapshot_date"], got["model_id"]])
        want = truth.reindex(keys)[list(FEATURE_COLUMNS)].to_numpy(dtype="float32")
        np.testing.assert_allclose(got[list(FEATURE_COLUMNS)].to_numpy(), want, rtol=1e-6, equal_nan=True)
    finally:
        await pool.close()
        await bus.stop()
