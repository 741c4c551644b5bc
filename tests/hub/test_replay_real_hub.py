"""The replay Hub behaves as huggingface.co does (sources in docs/decisions/replay-hub.md)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from hubpulse.hub.live import PLACEHOLDER_CREATED_AT

from .conftest import PAGE, Replay

PLACEHOLDER = pd.Timestamp("2022-03-02T23:29:04Z")


def _walk(replay: Replay, params: dict[str, Any], between: Any = None) -> list[dict[str, Any]]:
    """Every item of a walk, following Link headers; `between(page_number)` runs after each page."""
    url: str | None = f"{replay.url}/api/models"
    items: list[dict[str, Any]] = []
    first, n = True, 0
    while url is not None:
        response = httpx.get(url, params=params if first else None, timeout=30)
        response.raise_for_status()
        items.extend(response.json())
        url = response.links.get("next", {}).get("url")
        first, n = False, n + 1
        if between is not None:
            between(n)
    return items


def test_default_order_is_trending_score_with_an_id_on_every_item(replay: Replay) -> None:
    rows = httpx.get(f"{replay.url}/api/models", params={"limit": 50}).json()
    scores = [r["trendingScore"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == replay.hub.day(0)["trending_score"].max()
    assert all(len(r["_id"]) == 24 and int(r["_id"], 16) >= 0 for r in rows)


def test_the_cursor_is_the_hubs_keyset_filter(replay: Replay) -> None:
    response = httpx.get(f"{replay.url}/api/models", params={"sort": "downloads", "limit": 5})
    last = response.json()[-1]
    cursor = httpx.URL(response.links["next"]["url"]).params["cursor"]
    data = orjson.loads(base64.b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert data == {
        "$or": [
            {"downloads": last["downloads"], "_id": {"$gt": last["_id"]}},
            {"downloads": {"$lt": last["downloads"]}},
            {"downloads": None},
        ]
    }


def test_scores_moving_during_a_default_walk_repeat_a_model_and_skip_another(replay: Replay) -> None:
    day = replay.hub.day(0).sort_values("trending_score", ascending=False)
    faller, riser = str(day["model_id"].iloc[3]), str(day["model_id"].iloc[-3])
    # after the first page: the faller drops below everything, the riser jumps above everything
    replay.post("/_replay/live", {"moves": [{"after_requests": 2, "scores": {faller: -1.0, riser: 10**9}}]})
    ids = [i["id"] for i in _walk(replay, {"limit": PAGE})]
    assert ids.count(faller) == 2  # listed on page one, and again at the end
    assert riser not in ids  # it rose past the cursor: never listed in this walk
    assert len(ids) == len(day)  # the walk's length looks right, which is why nobody notices


def test_a_created_at_walk_is_exact_while_scores_move(replay: Replay) -> None:
    day = replay.hub.day(0).sort_values("trending_score", ascending=False)
    moves = {str(m): float(k) for k, m in enumerate(day["model_id"].iloc[::50])}
    replay.post("/_replay/live", {"moves": [{"after_requests": 3, "scores": moves}]})
    ids = [i["id"] for i in _walk(replay, {"limit": PAGE, "sort": "createdAt"})]
    assert len(ids) == len(set(ids)) == len(day)


def test_old_repos_carry_the_creation_date_placeholder(replay: Replay) -> None:
    day = replay.hub.day(0)
    old = day.loc[pd.to_datetime(day["created_at"]) < PLACEHOLDER, "model_id"]
    assert len(old) > 0
    model = httpx.get(f"{replay.url}/api/models/{old.iloc[0]}").json()
    assert model["createdAt"] == PLACEHOLDER_CREATED_AT
    assert model["_id"].startswith("621ffdc0")  # the ObjectId second is the placeholder's, like gpt2's
    newest = httpx.get(f"{replay.url}/api/models", params={"sort": "createdAt", "limit": 3}).json()
    assert all(m["createdAt"] != PLACEHOLDER_CREATED_AT for m in newest)


def test_a_renamed_repo_is_listed_under_its_new_name_and_its_old_name_redirects(replay: Replay) -> None:
    old = str(replay.hub.day(0)["model_id"].iloc[7])
    new = "renamed-org/" + old.split("/", 1)[1]
    replay.post("/_replay/live", {"renames": {old: new}})
    ids = {i["id"] for i in _walk(replay, {"limit": 1000, "sort": "createdAt"})}
    assert new in ids
    assert old not in ids
    response = httpx.get(f"{replay.url}/api/models/{old}", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == f"/api/models/{new}"  # relative, as huggingface.co sends it
    before = httpx.get(f"{replay.url}/api/models/{old}", follow_redirects=True).json()
    assert before["id"] == new
    assert HfApi(endpoint=replay.url).model_info(new).id == new


def test_rate_limit_headers_and_429_without_retry_after(replay: Replay) -> None:
    replay.post("/_replay/live", {"quota": 3, "window_s": 60})
    responses = [httpx.get(f"{replay.url}/api/models", params={"limit": 1}) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["ratelimit"].startswith('"api";r=2;t=')
    assert responses[0].headers["ratelimit-policy"] == '"fixed window";"api";q=3;w=60'
    assert responses[3].headers["ratelimit"].startswith('"api";r=0;t=')
    assert "retry-after" not in responses[3].headers
    assert "error" in responses[3].json()


def test_injected_429s_send_retry_after_only_when_asked(replay: Replay) -> None:
    replay.post("/_replay/faults", {"fail_next": 1, "fail_status": 429})
    assert "retry-after" not in httpx.get(f"{replay.url}/api/models", params={"limit": 1}).headers


def test_tokens_private_repos_and_bad_credentials(replay: Replay) -> None:
    day = replay.hub.day(0)
    secret = str(day["model_id"].iloc[11])
    owner = secret.split("/", 1)[0]
    replay.post("/_replay/live", {"tokens": {"hf_owner": owner, "hf_other": "someone-else"}, "private": [secret]})

    def listed(token: str | None) -> dict[str, dict[str, Any]]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        rows = httpx.get(f"{replay.url}/api/models", params={"author": owner}, headers=headers).json()
        return {r["id"]: r for r in rows}

    assert secret not in listed(None)
    assert secret not in listed("hf_other")
    mine = listed("hf_owner")
    assert mine[secret]["private"] is True
    assert all(r["private"] is False for k, r in mine.items() if k != secret)
    bad = httpx.get(f"{replay.url}/api/models", headers={"authorization": "Bearer hf_wrong"})
    assert (bad.status_code, bad.json()) == (401, {"error": "Invalid credentials in Authorization header"})
    with pytest.raises(HfHubHTTPError) as caught:
        list(HfApi(endpoint=replay.url, token="hf_wrong").list_models(limit=1))
    assert caught.value.response is not None
    assert caught.value.response.status_code == 401
    assert httpx.get(f"{replay.url}/api/models/{secret}").status_code == 404
    assert httpx.get(f"{replay.url}/api/models/{secret}", headers={"authorization": "Bearer hf_owner"}).is_success


@pytest.mark.parametrize(
    "params",
    [
        {"expand": "baseModels"},
        {"expand[]": "childrenModelCount"},
        {"expand": "usedStorage"},
        {"sort": "trending"},
        {"sort": "trending_score"},
        {"page": "2"},
        {"offset": "100"},
    ],
)
def test_values_the_hub_refuses_get_400(replay: Replay, params: dict[str, str]) -> None:
    response = httpx.get(f"{replay.url}/api/models", params=params)
    assert response.status_code == 400
    assert "error" in response.json()


def test_detail_only_expand_values_are_accepted_on_one_model(replay: Replay) -> None:
    model_id = str(replay.hub.day(0)["model_id"].iloc[5])
    assert httpx.get(f"{replay.url}/api/models/{model_id}", params={"expand": "baseModels"}).is_success


def test_creating_an_existing_space_with_exist_ok_returns_its_url(replay: Replay) -> None:
    api = HfApi(endpoint=replay.url, token="hf_any")
    first = api.create_repo("me/space-twice", repo_type="space", space_sdk="gradio")
    again = api.create_repo("me/space-twice", repo_type="space", space_sdk="gradio", exist_ok=True)
    assert str(again) == str(first)
    conflict = httpx.post(
        f"{replay.url}/api/repos/create",
        json={"name": "space-twice", "organization": "me", "type": "space", "sdk": "gradio"},
        headers={"authorization": "Bearer hf_any"},
    )
    assert conflict.status_code == 409
    assert conflict.json()["url"] == str(first)
    runtime = api.get_space_runtime("me/space-twice")
    assert runtime.dev_mode is False
    api.delete_repo("me/space-twice", repo_type="space")


def test_trending_lists_no_private_repo(replay: Replay) -> None:
    top = httpx.get(f"{replay.url}/api/trending", params={"limit": 5}).json()["recentlyTrending"]
    secret = top[0]["repoData"]["id"]
    replay.post("/_replay/live", {"private": [secret]})
    again = httpx.get(f"{replay.url}/api/trending", params={"limit": 5}).json()["recentlyTrending"]
    assert secret not in [i["repoData"]["id"] for i in again]
