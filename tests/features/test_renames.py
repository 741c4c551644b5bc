"""A snapshot marked `renamed_from` moves the model's history to its new name in the features store, at least
once: the mark redelivered and the old name's late snapshots change nothing more (issue 14)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from features.support import fetch, hub_snapshots, received
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import ModelFeatures, ModelFeaturesPacked, ModelSnapshot
from hubpulse_common.kafka import EventBus
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker


class Recording(EventBus):
    """The real bus, keeping what the day closes publish."""

    published: list[ModelFeatures]

    async def publish_encoded(
        self, topic: str, items: Iterable[tuple[bytes, bytes]], *, trace_id: str | None = None
    ) -> int:
        items = list(items)
        assert topic == ModelFeaturesPacked.topic  # v1 only where the setting asks for it
        for _, value in items:
            self.published.extend(ModelFeaturesPacked.model_validate_json(value).as_v1())
        return await super().publish_encoded(topic, items, trace_id=trace_id)


async def _rows(url: str, model_id: str) -> list[tuple[str, object]]:
    history = await fetch(url, "SELECT snapshot_date FROM feature_history WHERE model_id = $1 ORDER BY 1", model_id)
    rows = await fetch(url, "SELECT snapshot_date FROM feature_rows WHERE model_id = $1 ORDER BY 1", model_id)
    return [("history", r["snapshot_date"]) for r in history] + [("rows", r["snapshot_date"]) for r in rows]


@dataclass
class Renamed:
    """Two synthetic days in which one model is renamed on the second (its snapshot there marks the old name)."""

    worker: FeaturesWorker
    bus: Recording
    day0: list[ModelSnapshot]
    day1: list[ModelSnapshot]
    old: str
    new: str


@asynccontextmanager
async def renamed_days(service_env: dict[str, str], database_url: str, *, seed: int) -> AsyncIterator[Renamed]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    bus = Recording(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id=f"features-renames-test-{seed}")
    bus.published = []
    await bus.start()
    pool = await create_pool(database_url)
    try:
        await repository.ensure_feature_set(pool)
        hub, prefix = SyntheticHub(40, 2, seed=seed), f"rn{uuid.uuid4().hex[:6]}-"
        day0, day1 = hub_snapshots(hub, 0, prefix), hub_snapshots(hub, 1, prefix)
        old = day0[4].model_id
        new = old.replace(prefix, prefix + "new-", 1)
        day1 = [e.model_copy(update={"model_id": new, "renamed_from": old}) if e.model_id == old else e for e in day1]
        yield Renamed(FeaturesWorker(pool, bus), bus, day0, day1, old, new)
    finally:
        await pool.close()
        await bus.stop()


async def _days_observed(url: str, model_id: str, day: dt.date) -> float:
    """The model-day's `days_observed_14d` as stored (the velocity features' count of days in the window)."""
    rows = await fetch(
        url,
        "SELECT values[array_position(s.columns, 'days_observed_14d')] AS seen FROM feature_rows f"
        " JOIN feature_sets s USING (feature_set) WHERE model_id = $1 AND snapshot_date = $2",
        model_id,
        day,
    )
    return float(rows[0]["seen"])


async def test_a_marked_snapshot_moves_the_history_once_and_late_old_rows_follow(
    service_env: dict[str, str], database_url: str
) -> None:
    async with renamed_days(service_env, database_url, seed=3) as r:
        worker, bus, day0, day1, old, new = r.worker, r.bus, r.day0, r.day1, r.old, r.new
        await worker.handle(received(day0))
        assert await worker.close_day(day0[0].snapshot_date) == len(day0)

        await worker.handle(received(day1))
        moved = await _rows(database_url, new)
        assert [what for what, _ in moved] == ["history", "history", "rows", "rows"]  # both days, one name
        assert await _rows(database_url, old) == []
        feats = await _days_observed(database_url, new, day1[0].snapshot_date)
        assert feats == 2  # the velocity features see the day before the rename

        # at least once: the mark again, and the old name's last day late (a lagging partition, a replay)
        await worker.handle(received([e for e in day1 if e.model_id == new]))
        await worker.handle(received([e for e in day0 if e.model_id == old]))
        assert await _rows(database_url, old) == []
        assert await _rows(database_url, new) == moved

        # the day's close passes the mark on to the scorer with the new name's features, and only there
        await worker.close_day(day1[0].snapshot_date)
        marks = {e.model_id: e.renamed_from for e in bus.published if e.snapshot_date == day1[0].snapshot_date}
        assert marks[new] == old
        assert {m for m, r in marks.items() if r is not None} == {new}


@pytest.mark.parametrize("later_day_closed", [False, True], ids=["later-day-open", "later-day-closed"])
async def test_an_old_name_day_arriving_after_the_new_names_later_day_is_counted_in_it(
    service_env: dict[str, str], database_url: str, later_day_closed: bool
) -> None:
    """The two names hash to different partitions: the renamed model's first day under its new name can be handled
    before its day before, under the old name (a consumer catching up drains one partition at a time, so the later
    day may even have closed by then). That day's features are computed again once the late row is in, and a
    closed day reopens for it."""
    async with renamed_days(service_env, database_url, seed=5 + later_day_closed) as r:
        worker, bus, day0, day1, old, new = r.worker, r.bus, r.day0, r.day1, r.old, r.new
        later = day1[0].snapshot_date
        await worker.handle(received([e for e in day0 if e.model_id != old]))
        await worker.handle(received(day1))  # the new name's day, before the old name's day before it
        if later_day_closed:
            await worker.close_day(later)
            assert await _days_observed(database_url, new, later) == 1
        await worker.handle(received([e for e in day0 if e.model_id == old]))
        assert await _rows(database_url, old) == []
        await worker.close_day(day0[0].snapshot_date)
        assert await worker.close_day(later) > 0  # open again, if it was closed
        feats = await _days_observed(database_url, new, later)
        assert feats == 2  # computed again: the day before the rename counts
        published = [e for e in bus.published if e.snapshot_date == later and e.model_id == new]
        assert published[-1].features["days_observed_14d"] == 2
