"""A day's close reads the whole day: its reads join the day's history by hashing it, not by one index lookup per
model (the nested loop the planner picks for a day of thousands of models: it takes the day's DISTINCT ON for 200
rows, as it always does)."""

from __future__ import annotations

import asyncpg

from features.support import streamed_day
from hubpulse_common.kafka import EventBus
from hubpulse_features import repository
from hubpulse_features.service import FEATURE_SET


async def test_the_close_reads_join_the_history_without_a_nested_loop(service_env, database_url) -> None:
    bus = EventBus(service_env["HUBPULSE_KAFKA_BOOTSTRAP"], client_id="features-close-plan-test")  # never used
    async with streamed_day(database_url, bus, seed=10, tag="cp", models=5000) as (worker, events):
        day = events[0].snapshot_date
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("ANALYZE feature_history")  # even where the history's day is counted right
            await repository.plan_close_read(conn)
            for query in (repository._SELECT_RANK_INPUTS, repository._SELECT_DAY_ROWS):
                plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", day, FEATURE_SET))
                assert "feature_history" in plan
                assert "Nested Loop" not in plan, plan
                assert "Sort" not in plan, plan  # no sort of the day's wide rows (a hash anti-join)
        finally:
            await conn.close()
        # closed, as the other tests leave their days (and it is still a whole close, with its reads)
        assert await worker.close_day(day) >= len(events)
        # the closed day's partition stays, indexed by model: a rename's move of a model's rows reads them there
        # instead of scanning every kept day
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("ANALYZE feature_stream")
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    "EXPLAIN UPDATE feature_stream SET model_id = $2 WHERE model_id = $1", events[0].model_id, "x/y"
                )
            )
            partition = f"feature_stream_{day:%Y%m%d}"
            assert f"{partition}_model on {partition}" in plan, plan
        finally:
            await conn.close()
