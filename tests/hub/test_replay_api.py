"""The replay Hub through the real huggingface_hub client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from hubpulse.hub import create_app, start_in_thread

from .conftest import N_MODELS, PAGE, Replay

EXPAND: list[Any] = [
    "author",
    "downloads",
    "downloadsAllTime",
    "likes",
    "trendingScore",
    "createdAt",
    "lastModified",
    "pipeline_tag",
    "library_name",
    "tags",
]
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_full_walk_returns_every_model_exactly_once(replay: Replay):
    expected = set(replay.hub.day(0)["model_id"])
    ids = [m.id for m in HfApi(endpoint=replay.url).list_models(limit=None, expand=EXPAND)]
    assert len(expected) > 10 * PAGE  # many pages
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected


def test_expand_fields_are_present(replay: Replay):
    model = next(iter(HfApi(endpoint=replay.url).list_models(sort="downloads", limit=1, expand=EXPAND)))
    assert model.downloads_all_time is not None
    assert model.downloads is not None
    assert model.downloads_all_time >= model.downloads > 0
    assert model.created_at is not None
    assert model.last_modified is not None
    assert model.author == model.id.split("/")[0]
    assert model.trending_score is not None
    assert model.likes is not None
    assert model.tags


def test_filters_match_the_day(replay: Replay):
    api, day = HfApi(endpoint=replay.url), replay.hub.day(0)
    author = str(day["author"].value_counts().index[0])
    got = {m.id for m in api.list_models(author=author)}
    assert got == set(day.loc[day["author"] == author, "model_id"])
    got = {m.id for m in api.list_models(pipeline_tag="text-classification")}
    assert got == set(day.loc[day["pipeline_tag"] == "text-classification", "model_id"])
    got = {m.id for m in api.list_models(filter=["transformers", "license:mit"])}
    tags = day["tags"].astype(str).str.split(",")
    want = day.loc[tags.apply(lambda t: {"transformers", "license:mit"} <= set(t)), "model_id"]
    assert got == set(want)
    assert got
    got = {m.id for m in api.list_models(search="QWEN-7B")}
    assert got == set(day.loc[day["model_id"].str.contains("qwen-7b"), "model_id"])
    assert got


@pytest.mark.parametrize(
    ("sort", "column"), [("downloads", "downloads"), ("likes", "likes"), ("trending_score", "trending_score")]
)
def test_sorts_descend(replay: Replay, sort: str, column: str):
    top = list(HfApi(endpoint=replay.url).list_models(sort=sort, limit=250))  # type: ignore[arg-type]
    values = [getattr(m, column) for m in top]
    assert len(top) == 250
    assert values == sorted(values, reverse=True)
    assert values[0] == replay.hub.day(0)[column].max()


def test_sort_by_date_and_likes7d_and_direction_is_ignored(replay: Replay):
    api = HfApi(endpoint=replay.url)
    created = [m.created_at.isoformat() for m in api.list_models(sort="created_at", limit=50) if m.created_at]
    assert created == sorted(created, reverse=True)
    modified = [
        m.last_modified.isoformat()
        for m in api.list_models(sort="last_modified", limit=50, full=True)
        if m.last_modified
    ]
    assert modified == sorted(modified, reverse=True)
    rows = httpx.get(f"{replay.url}/api/models", params={"sort": "likes7d", "expand[]": "likes7d", "limit": 40}).json()
    assert [r["likes7d"] for r in rows] == sorted((r["likes7d"] for r in rows), reverse=True)
    # huggingface.co sorts descending only; `direction` is accepted and changes nothing (huggingface_hub PR #3882)
    rows = httpx.get(f"{replay.url}/api/models", params={"sort": "downloads", "direction": "1", "limit": 40}).json()
    assert [r["downloads"] for r in rows] == sorted((r["downloads"] for r in rows), reverse=True)


def test_model_info_and_not_found(replay: Replay):
    api = HfApi(endpoint=replay.url)
    model_id = str(replay.hub.day(0)["model_id"].iloc[42])
    info = api.model_info(model_id)
    assert info.id == model_id
    assert info.sha
    assert info.downloads is not None
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")


def test_trending_endpoint_follows_the_rank(replay: Replay):
    items = httpx.get(f"{replay.url}/api/trending", params={"limit": 10}).json()["recentlyTrending"]
    day = replay.hub.day(0)
    top = day.sort_values("trending_rank").head(10)["model_id"].tolist()
    assert [i["repoData"]["id"] for i in items] == top


def test_bad_requests_are_400(replay: Replay):
    for params in ({"sort": "stars"}, {"cursor": "not-a-cursor"}, {"limit": "x"}, {"expand[]": "nonsense"}):
        response = httpx.get(f"{replay.url}/api/models", params=params)
        assert response.status_code == 400
        assert "error" in response.json()


def test_clock_advance_changes_stats(replay: Replay):
    api = HfApi(endpoint=replay.url)
    before = {m.id: (m.downloads, m.likes) for m in api.list_models(sort="downloads", limit=200)}
    state = replay.post("/_replay/advance", {"days": 3})
    assert state["day"] == 3
    assert state["date"] == "2025-01-04"
    after = {m.id: (m.downloads, m.likes) for m in api.list_models(limit=None)}
    changed = [k for k in before if k in after and after[k] != before[k]]
    assert len(changed) > 100
    assert len(after) >= len(before)
    over = httpx.post(f"{replay.url}/_replay/advance", json={"days": 100})
    assert over.status_code == 409
    assert over.json()["error"]["code"] == "end_of_history"


def test_walk_started_before_an_advance_stays_exact(replay: Replay):
    pages = HfApi(endpoint=replay.url).list_models(limit=None, sort="downloads")
    first = [next(iter(pages)).id]  # the client now holds a cursor from day 0
    seen = first + [m.id for m in pages]
    replay.post("/_replay/advance")
    assert len(seen) == len(set(seen))


def test_429_with_retry_after_is_honoured(replay: Replay):
    replay.post("/_replay/faults", {"fail_next": 2, "fail_status": 429, "retry_after": 0})
    started = time.monotonic()
    models = list(HfApi(endpoint=replay.url).list_models(limit=5))
    assert len(models) == 5
    assert time.monotonic() - started >= 2.0  # huggingface_hub waits Retry-After + 1 s per 429


def test_5xx_and_429_storm_is_survivable(replay: Replay, no_sleep: list[float]):
    replay.post("/_replay/faults", {"seed": 3, "rate_5xx": 0.25, "rate_429": 0.15, "retry_after": 7})
    ids = [m.id for m in HfApi(endpoint=replay.url).list_models(limit=None)]
    assert len(ids) == len(set(ids)) == N_MODELS - (N_MODELS - len(replay.hub.day(0)))
    assert 8.0 in no_sleep  # Retry-After 7 + 1
    assert len(no_sleep) >= 5


def test_faults_are_reproducible(replay: Replay):
    def statuses() -> list[int]:
        replay.post("/_replay/faults", {"seed": 11, "rate_5xx": 0.3, "rate_429": 0.2})
        return [httpx.get(f"{replay.url}/api/models", params={"limit": 1}).status_code for _ in range(30)]

    first = statuses()
    assert first == statuses()
    assert {200, 429} <= set(first)
    assert len(set(first)) >= 3


def test_truncated_and_malformed_pages_fail_the_client(replay: Replay):
    replay.post("/_replay/faults", {"rate_truncate": 1.0})
    response = httpx.get(f"{replay.url}/api/models", params={"limit": 50})
    assert response.status_code == 200
    with pytest.raises(ValueError, match=r"(?i)json|expecting|unterminated|char"):
        response.json()
    replay.post("/_replay/faults", {"rate_malformed": 1.0})
    with pytest.raises(TypeError):
        list(HfApi(endpoint=replay.url).list_models(limit=3))
    assert httpx.get(f"{replay.url}/_replay/state").status_code == 200  # control routes are never faulted


@pytest.mark.skipif(not (SHARED_DATA / "transformersjs-trending_daily.csv.gz").exists(), reason="no shared data")
def test_history_file_serves():
    run = start_in_thread(create_app(SHARED_DATA / "transformersjs-trending_daily.csv.gz"))
    try:
        api = HfApi(endpoint=run.url)
        state = httpx.get(f"{run.url}/_replay/state").json()
        assert state["date"] == "2024-05-08"
        assert state["days"] > 300
        models = list(api.list_models(limit=None, expand=["downloads", "likes", "pipeline_tag", "trendingScore"]))
        assert len(models) == state["models"] > 50
        trending = httpx.get(f"{run.url}/api/trending", params={"limit": 3}).json()["recentlyTrending"]
        assert len(trending) == 3
        first = api.model_info("Alibaba-NLP/gte-base-en-v1.5")
        assert first.downloads == 97301
        httpx.post(f"{run.url}/_replay/advance", json={"days": 30}).raise_for_status()
        assert api.model_info("Alibaba-NLP/gte-base-en-v1.5").downloads != 97301
    finally:
        run.stop()
