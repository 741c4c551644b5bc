"""A features service catching up on a backlog (a backfill, the end of an outage, a new consumer group) closes each
announced day once: the consumer drains one partition at a time, so a later day shows up long before an earlier one
is complete, and closing then would republish the day again with each of its remaining batches."""

from __future__ import annotations

import collections
import datetime as dt
import secrets
import uuid
from typing import Any

from support.polling import wait_for

from features.support import fetch, hub_snapshots, publish, published_messages, running, settings_for
from hubpulse_common.events import DayIngested
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features.app import create_app
from hubpulse_features.settings import FeaturesSettings

MODELS, DAYS = 3000, 3


async def _published_rows(bootstrap: str) -> collections.Counter[dt.date]:
    """Model-days published on hub.features.v3, by day (the topic read from its start to its end)."""
    rows: collections.Counter[dt.date] = collections.Counter()
    for message in await published_messages(bootstrap):
        rows[message.snapshot_date] += len(message.model_id)
    return rows


async def test_a_backlog_of_announced_days_is_closed_and_published_once_per_model_day(
    service_env: dict[str, str], database_url: str, own_kafka: Any
) -> None:
    # a broker of its own (the service reads only this backlog) and days of their own in the shared database
    start = dt.date(2200, 1, 1) + dt.timedelta(days=DAYS * secrets.randbelow(5000))
    hub, prefix = SyntheticHub(MODELS, DAYS, seed=11), f"k{uuid.uuid4().hex[:6]}-"
    days = {
        start + dt.timedelta(days=d): [
            s.model_copy(update={"snapshot_date": start + dt.timedelta(days=d)}) for s in hub_snapshots(hub, d, prefix)
        ]
        for d in range(DAYS)
    }
    for day, rows in days.items():  # what the ingestor leaves on the topics while the service is down
        await publish(own_kafka.url, [*rows, DayIngested(snapshot_date=day, models=len(rows), source="hub")])
    env = {**service_env, "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url}
    # the idle fallback far away: only the count (or, wrongly, a later day) closes a day within this test
    settings = settings_for(FeaturesSettings, env, database_url, day_close_idle_s=600.0, day_close_check_s=0.5)
    async with running(create_app(settings)):
        closed = await wait_for(
            lambda: fetch(
                database_url,
                "SELECT snapshot_date, models FROM feature_days"
                " WHERE snapshot_date = ANY($1) AND closed_at IS NOT NULL",
                list(days),
            ),
            lambda found: len(found) == DAYS,
            timeout_s=120,
            what="every day of the backlog closed",
        )
    assert {r["snapshot_date"]: r["models"] for r in closed} == {day: len(rows) for day, rows in days.items()}
    published = await _published_rows(own_kafka.url)
    assert {day: published[day] for day in days} == {day: len(rows) for day, rows in days.items()}  # each once
