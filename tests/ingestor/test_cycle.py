"""One ingestion cycle in-process against the replay Hub: pagination, storms, bad pages, re-runs."""

from __future__ import annotations

import math

import asyncpg

from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import EventBus
from hubpulse_ingestor import repository
from hubpulse_ingestor.cycle import run_cycle
from hubpulse_ingestor.settings import IngestorSettings

from .conftest import PAGE, EventTap, Replay, SnapshotTap, Store

Stores = tuple[asyncpg.Pool, EventBus]


async def test_cycle_walks_every_page_once(
    replay: Replay, settings: IngestorSettings, stores: Stores, tap: SnapshotTap
) -> None:
    pool, bus = stores
    n = replay.models(0)
    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed"
    assert result.pages == math.ceil(n / PAGE) > 10
    assert result.models == n
    assert result.snapshot_date == replay.day(0)  # dated by the Hub's Date header, not the local clock
    assert await repository.count_snapshots(pool, replay.day(0)) == (replay.models(0), replay.models(0))
    expected = replay.hub.day(0).set_index("model_id")
    row = await pool.fetchrow("SELECT * FROM snapshots ORDER BY downloads DESC LIMIT 1")
    assert row["downloads"] == expected.loc[row["model_id"], "downloads"]
    assert row["likes"] == expected.loc[row["model_id"], "likes"]
    assert row["created_at"] is not None
    assert row["source"] == "hub"

    events = await tap.rows()
    assert len(events) == n
    assert {key.decode() for key, _ in events} == set(expected.index)
    assert all(key.decode() == e.model_id and e.snapshot_date == replay.day(0) for key, e in events)
    cycle = await repository.latest_cycle(pool)
    assert cycle is not None
    assert cycle["status"] == "completed"
    assert cycle["next_url"] is None


async def test_429_and_5xx_storm_completes_honouring_retry_after(
    replay: Replay, settings: IngestorSettings, stores: Stores, hf_sleeps: list[float]
) -> None:
    pool, bus = stores
    replay.post("/_replay/faults", {"seed": 3, "rate_429": 0.3, "retry_after": 7, "rate_5xx": 0.2})

    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed"
    assert await repository.count_snapshots(pool, replay.day(0)) == (replay.models(0), replay.models(0))
    assert 7 + 1 in hf_sleeps  # huggingface_hub waited the server's Retry-After (plus its 1 s margin)
    assert any(w < 1 for w in hf_sleeps)  # and backed off exponentially (from our base wait) on 5xx


async def test_storm_longer_than_client_retries_is_retried_by_the_ingestor(
    replay: Replay, settings: IngestorSettings, stores: Stores, hf_sleeps: list[float]
) -> None:
    pool, bus = stores
    # huggingface_hub gives up after http_retries + 1 tries; the ingestor retries the page again.
    replay.post("/_replay/faults", {"fail_next": settings.http_retries + 2, "fail_status": 503})

    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed"
    assert result.retries >= 1
    assert await repository.count_snapshots(pool, replay.day(0)) == (replay.models(0), replay.models(0))


async def test_malformed_pages_are_retried_then_reported_and_the_rest_completes(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    replay.post("/_replay/faults", {"seed": 5, "rate_malformed": 0.35, "rate_truncate": 0.2})

    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed_with_errors"
    assert result.retries > len(result.failed_pages) > 0  # most bad pages came right on a retry
    n, k = replay.models(0), len(result.failed_pages)
    assert result.pages == math.ceil(n / PAGE)
    # each page that stayed bad lost its own models (1 to PAGE of them), nothing else
    assert n - PAGE * k <= result.models <= n - k
    assert await repository.count_snapshots(pool, replay.day(0)) == (result.models, result.models)
    cycle = await repository.latest_cycle(pool)
    assert cycle is not None
    assert [p["url"] for p in cycle["failed_pages"]] == [p["url"] for p in result.failed_pages]
    assert all("cursor=" in p["url"] or p["url"].endswith("/api/models") for p in result.failed_pages)


async def test_rerun_and_next_day_keep_one_row_per_model_day(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    first = await run_cycle(pool, bus, settings)
    again = await run_cycle(pool, bus, settings)
    assert again.cycle_id != first.cycle_id
    assert await repository.count_snapshots(pool, replay.day(0)) == (replay.models(0), replay.models(0))

    replay.post("/_replay/advance", {"days": 1})
    next_day = await run_cycle(pool, bus, settings)
    assert next_day.snapshot_date == replay.day(1)
    assert await repository.count_snapshots(pool, replay.day(1)) == (replay.models(1), replay.models(1))
    assert await pool.fetchval("SELECT count(*) FROM snapshots") == replay.models(0) + replay.models(1)
    partitions = await pool.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = 'snapshots'::regclass")
    assert partitions == 2


async def test_an_unfinished_cycle_is_resumed_not_restarted(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    # A cycle left 'running', as after a crash before its first checkpoint.
    cycle = await repository.start_cycle(pool, "hub", f"{replay.url}/api/models")
    walk = await run_cycle(pool, bus, settings)
    assert walk.resumed
    assert walk.cycle_id == cycle["cycle_id"]
    latest = await repository.latest_cycle(pool)
    assert latest is not None
    assert (latest["status"], latest["resumes"]) == ("completed", 1)


async def test_v1_is_published_beside_v2_only_when_asked(
    replay: Replay, settings: IngestorSettings, stores: Stores, tap: SnapshotTap, kafka: Store
) -> None:
    """HUBPULSE_SNAPSHOTS_PUBLISH_V1: hub.snapshots.v1 carries the same rows as v2, one message a model, keyed by it."""
    pool, bus = stores
    v1 = EventTap(kafka.url, ModelSnapshot)
    await v1.mark()
    await run_cycle(pool, bus, settings)
    assert await v1.read() == []  # off by default
    replay.post("/_replay/advance", {"days": 1})
    result = await run_cycle(pool, bus, settings.model_copy(update={"snapshots_publish_v1": True}))
    assert result.status == "completed"

    def rows(events: list[tuple[bytes, ModelSnapshot]]) -> list[tuple[bytes, dict[str, object]]]:
        day = [(k, e.model_dump(exclude={"occurred_at"})) for k, e in events if e.snapshot_date == replay.day(1)]
        return sorted(day, key=lambda pair: pair[0])

    published = rows(await v1.read())
    assert len(published) == result.models == replay.models(1)
    assert all(k.decode() == e["model_id"] for k, e in published)
    assert published == rows(await tap.rows())
