"""A closed day's events carry each model's tags exactly as they were snapshotted: the close passes on the JSON
PostgreSQL writes of the stored array, whatever the tags hold (a separator, quotes, a backslash, a newline, other
scripts), and no tags as an empty list."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterable

from features.support import received
from hubpulse_common.db import create_pool, migrate
from hubpulse_common.events import ModelFeaturesPacked, ModelSnapshot
from hubpulse_common.kafka import EventBus
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker

_TAGS = [
    ["transformers", "license:apache-2.0"],
    [],
    ["a\x1fb", "c"],  # the unit separator (the tags' separator in the close's read before)
    ['say "hi"', "back\\slash", "com,ma", "new\nline", "tab\tand\r"],
    ["日本語", "émoji 🤗", ""],
]


class Recording(EventBus):
    """The real bus (started, so nothing is published unless asked), recording what it is given."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, client_id="features-close-tags-test")
        self.published: list[tuple[bytes, bytes]] = []

    async def publish_encoded(
        self, topic: str, items: Iterable[tuple[bytes, bytes]], *, trace_id: str | None = None
    ) -> int:
        pairs = list(items)
        if topic == ModelFeaturesPacked.topic:
            self.published += pairs
        return len(pairs)  # not sent: the scorer tests read the topics from their start


async def test_the_closed_days_events_carry_the_tags_as_snapshotted(service_env, database_url) -> None:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_features")
    bus = Recording(service_env["HUBPULSE_KAFKA_BOOTSTRAP"])
    pool = await create_pool(database_url)
    # a day of its own (no other test streams it), before the others' (it overtakes none of them)
    day = dt.date(1980, 1, 1) + dt.timedelta(days=random.randrange(3000))
    prefix = f"ct{uuid.uuid4().hex[:6]}-"
    snapshots = [
        ModelSnapshot(model_id=f"{prefix}m{i}", snapshot_date=day, downloads=i, likes=1, tags=tags)
        for i, tags in enumerate(_TAGS)
    ]
    await bus.start()
    try:
        await repository.ensure_feature_set(pool)
        worker = FeaturesWorker(pool, bus)
        await worker.handle(received(snapshots))
        assert await worker.close_day(day) == len(snapshots)
        rows = [row for _, value in bus.published for row in ModelFeaturesPacked.model_validate_json(value).as_v1()]
        assert {r.model_id: r.tags for r in rows} == {s.model_id: s.tags for s in snapshots}
    finally:
        await pool.close()
        await bus.stop()
