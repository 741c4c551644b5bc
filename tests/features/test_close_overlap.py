"""A day's close reads its rows while it ranks the day: PostgreSQL sorts and joins the rows' read while the ranks
are read and computed, instead of after them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pandas as pd

from features.support import streamed_day
from hubpulse_common.kafka import EventBus
from hubpulse_features import repository, service


async def test_the_rows_read_starts_before_the_day_is_ranked(service_env, database_url, monkeypatch) -> None:
    order: list[str] = []
    rank, read = service.day_cross_features, repository.stream_day_rows

    def ranks(rank_inputs: pd.DataFrame) -> pd.DataFrame:
        cross = rank(rank_inputs)
        order.append("ranked")
        return cross

    async def rows(conn, day, sink: Callable[[pd.DataFrame], Awaitable[None]]) -> None:
        order.append("rows read")
        await read(conn, day, sink)

    monkeypatch.setattr(service, "day_cross_features", ranks)
    monkeypatch.setattr(repository, "stream_day_rows", rows)
    bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="features-close-overlap-test")
    async with streamed_day(database_url, bus, seed=9, tag="co") as (worker, events):
        assert await worker.close_day(events[0].snapshot_date) == len(events)
    assert order == ["rows read", "ranked"]
