"""Ingestion against the replay Hub made faithful: live scores, midnight, placeholders, private repos, renames,
rate limits, pages that keep failing, odd values (issue 14 points 1-8; security audit H3/H4)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import asyncpg
import pandas as pd
import pytest

from hubpulse_common.kafka import EventBus
from hubpulse_ingestor import cycle as cycle_module
from hubpulse_ingestor import repository
from hubpulse_ingestor.cycle import run_cycle
from hubpulse_ingestor.identities import KnownIdentities
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_ingestor.snapshots import EncodedSnapshots, encode_page

from .conftest import PAGE, Replay, SnapshotTap

PLACEHOLDER = pd.Timestamp("2022-03-02T23:29:04Z")
Stores = tuple[asyncpg.Pool, EventBus]


async def _stored(pool: asyncpg.Pool, day: dt.date) -> dict[str, asyncpg.Record]:
    return {r["model_id"]: r for r in await pool.fetch("SELECT * FROM snapshots WHERE snapshot_date = $1", day)}


async def test_scores_moving_mid_walk_store_every_model_exactly_once(
    replay: Replay, settings: IngestorSettings, stores: Stores, tap: SnapshotTap
) -> None:
    pool, bus = stores
    day = replay.hub.day(0).sort_values("trending_score", ascending=False)
    faller, riser = str(day["model_id"].iloc[3]), str(day["model_id"].iloc[-3])
    moves = [{"after_requests": 3, "scores": {faller: -1.0, riser: 10.0**9}}]
    replay.post("/_replay/live", {"moves": moves})

    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed"
    assert result.listed == result.models == len(day)
    stored = await _stored(pool, replay.day(0))
    assert set(stored) == set(day["model_id"])
    assert stored[riser]["trending_score"] == 10.0**9  # the riser is there, with the score it had when read
    events = await tap.rows()
    assert len(events) == len(day)  # published once each, too


def test_a_duplicate_in_one_page_and_across_pages_is_stored_once() -> None:
    seen: set[str] = set()
    item = {"_id": "6390d9f33de76d60299acbe0", "id": "a/b", "downloads": 1}
    first = encode_page([item, dict(item)], dt.date(2026, 1, 1), seen=seen)
    again = encode_page([{**item, "id": "a/renamed"}], dt.date(2026, 1, 1), seen=seen)
    assert (len(first.encoded), first.skipped) == (1, {"duplicate": 1})
    assert (len(again.encoded), again.skipped) == (0, {"duplicate": 1})  # same _id, new name: the same model


async def test_a_page_that_keeps_failing_interrupts_the_cycle_and_the_next_run_resumes_from_it(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    # the trending list and three pages succeed, then the Hub answers 504 for good (as deep pages do)
    replay.post("/_replay/faults", {"fail_after": 4, "fail_next": 10_000, "fail_status": 504})

    stopped = await run_cycle(pool, bus, settings)

    assert stopped.status == "interrupted"
    assert stopped.models == 3 * PAGE
    cycle = await repository.latest_cycle(pool)
    assert cycle is not None
    assert cycle["status"] == "running"
    assert "cursor=" in cycle["next_url"]  # checkpointed at the failing page, not at the start

    replay.post("/_replay/faults", {})
    resumed = await run_cycle(pool, bus, settings)

    assert (resumed.status, resumed.resumed, resumed.cycle_id) == ("completed", True, stopped.cycle_id)
    assert resumed.models == resumed.listed == replay.models(0)
    assert await repository.count_snapshots(pool, replay.day(0)) == (replay.models(0), replay.models(0))


async def test_a_cycle_resumed_the_next_day_never_dates_todays_values_yesterday(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    replay.post("/_replay/faults", {"fail_after": 3, "fail_next": 10_000, "fail_status": 504})
    stopped = await run_cycle(pool, bus, settings)
    assert stopped.status == "interrupted"
    replay.post("/_replay/faults", {})
    replay.post("/_replay/advance", {"days": 1})  # midnight passes before the walk resumes

    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed"
    assert result.cycle_id != stopped.cycle_id  # the old walk expired; the new day got its own
    old = await repository.latest_cycle(pool)
    assert old is not None
    expired = await pool.fetchrow("SELECT status FROM ingest_cycles WHERE cycle_id = $1", stopped.cycle_id)
    assert expired is not None
    assert expired["status"] == "expired"
    yesterday, today = await _stored(pool, replay.day(0)), await _stored(pool, replay.day(1))
    assert len(yesterday) == stopped.models == 2 * PAGE
    assert len(today) == replay.models(1)
    truth0 = replay.hub.day(0).set_index("model_id")
    assert all(r["downloads"] == truth0.loc[m, "downloads"] for m, r in yesterday.items())  # yesterday's values
    truth1 = replay.hub.day(1).set_index("model_id")
    assert all(r["downloads"] == truth1.loc[m, "downloads"] for m, r in today.items())


async def test_the_creation_date_placeholder_is_stored_as_unknown(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    await run_cycle(pool, bus, settings)
    day = replay.hub.day(0)
    old = set(day.loc[pd.to_datetime(day["created_at"]) < PLACEHOLDER, "model_id"])
    assert old
    never_known = set(day.loc[day["created_at"].isna(), "model_id"])
    unknown = {r["model_id"] for r in await pool.fetch("SELECT model_id FROM snapshots WHERE created_at IS NULL")}
    assert unknown == old | never_known
    placeholder = "SELECT count(*) FROM snapshots WHERE created_at = '2022-03-02 23:29:04+00'"
    assert await pool.fetchval(placeholder) == 0


async def test_private_repos_never_enter_the_platform_even_with_a_token_set(
    replay: Replay, settings: IngestorSettings, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, bus = stores
    day = replay.hub.day(0)
    secret = str(day["model_id"].iloc[11])
    owner = secret.split("/", 1)[0]
    replay.post("/_replay/live", {"tokens": {"hf_owner": owner}, "private": [secret]})
    monkeypatch.setenv("HF_TOKEN", "hf_owner")  # a logged-in operator: the token must not be sent to list

    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed"
    assert await pool.fetchval("SELECT count(*) FROM snapshots WHERE model_id = $1", secret) == 0
    assert result.models == len(day) - 1

    # a bad token in the environment changes nothing either: none is sent
    monkeypatch.setenv("HF_TOKEN", "hf_revoked")
    replay.post("/_replay/advance", {"days": 1})
    assert (await run_cycle(pool, bus, settings)).status == "completed"


def test_private_items_that_do_get_listed_are_dropped_and_counted() -> None:
    items = [{"id": "me/secret", "private": True}, {"id": "me/public", "private": False}]
    outcome = encode_page(items, dt.date(2026, 1, 1))
    assert [k.decode() for k in outcome.encoded.keys] == ["me/public"]
    assert outcome.skipped == {"private": 1}


async def test_a_rename_moves_the_history_to_the_new_name(
    replay: Replay, settings: IngestorSettings, stores: Stores, tap: SnapshotTap
) -> None:
    pool, bus = stores
    await run_cycle(pool, bus, settings)
    old = str(replay.hub.day(0)["model_id"].iloc[7])
    new = "renamed-org/" + old.split("/", 1)[1]
    replay.post("/_replay/live", {"renames": {old: new}})
    replay.post("/_replay/advance", {"days": 1})
    identities = "SELECT hub_id, model_id, xmin::text AS version, xmax::text AS locker FROM hub_models"
    before = {r["hub_id"]: r for r in await pool.fetch(identities)}

    result = await run_cycle(pool, bus, settings)

    assert result.renamed == 1
    # an identity is written once: only the renamed model's row (and the day's new models) changed
    after = {r["hub_id"]: r for r in await pool.fetch(identities)}
    rewritten = {h for h, r in after.items() if h in before and r["version"] != before[h]["version"]}
    assert {after[h]["model_id"] for h in rewritten} == {new}
    # nor is a known identity locked (an upsert's DO UPDATE ... WHERE locks and dirties every row it skips)
    assert {h for h, r in after.items() if h not in rewritten and r["locker"] != "0"} == set()
    assert await pool.fetchval("SELECT count(*) FROM snapshots WHERE model_id = $1", old) == 0
    days = await pool.fetch("SELECT snapshot_date FROM snapshots WHERE model_id = $1 ORDER BY 1", new)
    assert [r["snapshot_date"] for r in days] == [replay.day(0), replay.day(1)]
    assert await pool.fetchval("SELECT new_id FROM model_renames WHERE old_id = $1", old) == new
    hub_ids = await pool.fetch("SELECT hub_id FROM hub_models WHERE model_id = $1", new)
    assert len(hub_ids) == 1
    # the first snapshot under the new name says which name it had: consumers move their history (issue 14)
    marked = {(e.model_id, e.snapshot_date): e.renamed_from for _, e in await tap.rows() if e.renamed_from}
    assert marked == {(new, replay.day(1)): old}


_DAY_IDS = "SELECT model_id FROM snapshots WHERE snapshot_date = $1"


async def test_a_later_walk_asks_the_database_about_new_and_renamed_identities_only(
    replay: Replay, settings: IngestorSettings, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler keeps the identities its walks stored (`KnownIdentities`): a day's walk sends the identity
    statement the pairs it has not stored, the renamed model's among them, and a rename back is found again."""
    pool, bus = stores
    asked: list[str] = []
    identify = repository.identify

    async def counted(pool: asyncpg.Pool, payload: str | None, day: dt.date) -> list[repository.IdentityMove]:
        asked.extend(row["model_id"] for row in json.loads(payload or "[]"))
        return await identify(pool, payload, day)

    monkeypatch.setattr(repository, "identify", counted)
    known = KnownIdentities()
    first = await run_cycle(pool, bus, settings, known=known)
    assert len(asked) == first.models == len(known)

    old = str(replay.hub.day(0)["model_id"].iloc[7])
    new = "renamed-org/" + old.split("/", 1)[1]
    for names, renamed in (({old: new}, (old, new)), ({new: old}, (new, old))):
        replay.post("/_replay/live", {"renames": names})
        replay.post("/_replay/advance", {"days": 1})
        asked.clear()
        day = await run_cycle(pool, bus, settings, known=known)
        assert day.snapshot_date is not None
        stored = {r["model_id"] for r in await pool.fetch(_DAY_IDS, day.snapshot_date)}
        before = {r["model_id"] for r in await pool.fetch(_DAY_IDS, day.snapshot_date - dt.timedelta(days=1))}
        # the day's new models and the renamed one (whose earlier days moved to its new name), nothing else
        assert set(asked) == (stored - before) | {renamed[1]}
        assert len(asked) < day.models / 10
        assert day.renamed == 1
        assert await pool.fetchval("SELECT model_id FROM hub_models WHERE model_id = $1", renamed[1]) == renamed[1]


async def test_rate_limit_is_paced_before_the_429_and_429s_without_retry_after_are_survived(
    replay: Replay,
    settings: IngestorSettings,
    stores: Stores,
    hf_sleeps: list[float],
) -> None:
    pool, bus = stores
    first = await run_cycle(pool, bus, settings)  # a previous walk, so the next can estimate its length
    replay.post("/_replay/live", {"quota": 10, "window_s": 1})
    replay.post("/_replay/faults", {"fail_next": 3, "fail_status": 429})

    result = await run_cycle(pool, bus, settings)

    assert result.status == "completed"
    assert result.models == replay.models(0)
    # the injected 429s carried no Retry-After and a quota not spent: exponential backoff from 0.01 s
    assert len(hf_sleeps) >= 3
    assert all(w < 1 for w in hf_sleeps)
    # and the quota itself was never hit: the walk waited for each window's reset before it ran out
    assert result.paced_s >= first.pages // 10  # about once every 10 requests, 1-2 s each (t + 1 s)
    assert result.walk_estimate_s == pytest.approx(first.pages * 1 / 10)


ODD_ITEMS: list[Any] = [
    {"_id": "odd00000000000000000001", "id": "odd/downloads", "downloads": 2**64},
    {"_id": "odd00000000000000000002", "id": "odd/likes", "likes": 2**31},
    {"_id": "odd00000000000000000003", "id": "odd/tags-int", "tags": 5},
    {"_id": "odd00000000000000000004", "id": "odd/nul", "tags": ["a\x00b"], "pipeline_tag": "text\x00"},
    {"_id": "odd00000000000000000005", "id": "odd/many-tags", "tags": [f"t{i}" for i in range(10_000)]},
    {"_id": "odd00000000000000000006", "id": "odd/\x00id"},
    {"_id": "odd00000000000000000007", "downloads": 3},
    "not an object",
    {"_id": "odd00000000000000000008", "id": "odd/all-time", "downloadsAllTime": 2**63},
]


async def test_odd_values_clean_or_reject_their_own_row_and_the_cycle_goes_on(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    replay.post("/_replay/live", {"extra_items": ODD_ITEMS})

    result = await asyncio.wait_for(run_cycle(pool, bus, settings), 120)

    assert result.status == "completed"
    assert result.skipped == {
        "downloads_out_of_range": 1,
        "likes_out_of_range": 1,
        "bad_id": 1,
        "no_id": 1,
        "not_an_object": 1,
        "downloads_all_time_out_of_range": 1,
    }
    assert result.cleaned == {"tags_not_a_list": 1, "nul_removed": 2, "tags_truncated": 1}
    assert result.listed == replay.models(0) + len(ODD_ITEMS)
    assert result.models == replay.models(0) + 3
    stored = await _stored(pool, replay.day(0))
    assert stored["odd/tags-int"]["tags"] == []
    assert stored["odd/nul"]["tags"] == ["ab"]
    assert stored["odd/nul"]["pipeline_tag"] == "text"
    assert len(stored["odd/many-tags"]["tags"]) == 1000
    row = await pool.fetchrow("SELECT listed, skipped, cleaned FROM ingest_cycles WHERE cycle_id = $1", result.cycle_id)
    assert row is not None
    assert (row["listed"], row["skipped"], row["cleaned"]) == (result.listed, result.skipped, result.cleaned)


async def test_a_failing_producer_fails_the_cycle_instead_of_hanging_it(
    replay: Replay, settings: IngestorSettings, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit H3: whatever escapes the per-row checks reaches the awaiting loop, which no longer waits for ever."""
    pool, bus = stores

    def broken(*args: object, **kwargs: object) -> object:
        raise TypeError("Integer exceeds 64-bit range")

    monkeypatch.setattr(cycle_module, "encode_page", broken)
    with pytest.raises(TypeError, match="64-bit"):
        await asyncio.wait_for(run_cycle(pool, bus, settings), 60)


async def test_a_row_the_database_refuses_fails_alone(stores: Stores) -> None:
    """Audit H4: one value PostgreSQL cannot take (here a NUL, bypassing the encoder) no longer fails its slice."""
    pool, _ = stores
    day = dt.date(2026, 2, 2)
    good = encode_page([{"id": f"ok/{i}", "downloads": i} for i in range(9)], day).encoded
    # the COPY fails on the NUL; the slice's JSON then finds the row alone
    rows = [*good.rows[:4], good.rows[4]._replace(model_id="ok/\x00"), *good.rows[5:]]
    refused = await repository.upsert_encoded(pool, EncodedSnapshots(good.keys, rows, {day}))
    assert refused == [b"ok/4"]
    assert await repository.count_snapshots(pool, day) == (8, 8)
    # the same on a day that already holds the rows (the JSON upsert from the start)
    refused = await repository.upsert_encoded(pool, EncodedSnapshots(good.keys, rows, {day}))
    assert refused == [b"ok/4"]
    assert await repository.count_snapshots(pool, day) == (8, 8)


async def test_the_days_trending_ranks_are_recorded(
    replay: Replay, settings: IngestorSettings, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, bus = stores
    monkeypatch.setenv("HUBPULSE_TRENDING_TOP", "25")
    from hubpulse_common.settings import load_settings

    result = await run_cycle(pool, bus, load_settings(IngestorSettings))
    assert result.status == "completed"
    rows = await pool.fetch(
        "SELECT model_id, trending_rank FROM snapshots WHERE trending_rank IS NOT NULL ORDER BY trending_rank"
    )
    assert [r["trending_rank"] for r in rows] == list(range(1, 26))
    # the Hub's trending order (the replay follows the history's own rank where it has one)
    expected = replay.hub.day(0).sort_values("trending_rank", kind="stable").head(25)["model_id"].tolist()
    assert [r["model_id"] for r in rows] == expected


async def test_a_walk_stopped_at_a_failing_page_expires_when_the_hubs_day_moves_on(
    replay: Replay, settings: IngestorSettings, stores: Stores
) -> None:
    pool, bus = stores
    replay.post("/_replay/faults", {"fail_after": 3, "fail_next": 10_000, "fail_status": 504})
    stopped = await run_cycle(pool, bus, settings)
    assert stopped.status == "interrupted"
    replay.post("/_replay/advance", {"days": 1})
    # the next day the trending list answers (its Date says the day moved on) but every page still fails
    replay.post("/_replay/faults", {"fail_after": 2, "fail_next": 10_000, "fail_status": 504})

    today = await run_cycle(pool, bus, settings)

    expired = await pool.fetchval("SELECT status FROM ingest_cycles WHERE cycle_id = $1", stopped.cycle_id)
    assert expired == "expired"
    assert today.cycle_id != stopped.cycle_id
    assert today.status == "interrupted"  # today's own walk, stopped at its own first page
    assert await repository.count_snapshots(pool, replay.day(1)) == (0, 0)
