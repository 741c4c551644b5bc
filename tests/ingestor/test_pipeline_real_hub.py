"""End to end, not the demo: ingestor -> features -> scorer -> gateway, with HF_ENDPOINT at the faithful replay Hub.

The Hub has a private repo (and the operator's token in the environment), scores that move during each walk,
a rate-limit quota, and a rename on the second day. Every public model is stored exactly once per day, none
private, and each is served by GET /v1/models/{id} once its day has been scored; the old name redirects.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pandas as pd
import pytest
from features.support import fetch, running, settings_for
from support.polling import wait_for
from support.quick import SMALL_BOOTSTRAP

from hubpulse.hub import create_app, start_in_thread
from hubpulse.hub.live import LiveConfig, ScoreMove
from hubpulse_common.features import compute_features
from hubpulse_common.settings import load_settings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features.app import create_app as create_features_app
from hubpulse_features.service import TIME_FEATURE_COLUMNS
from hubpulse_features.settings import FeaturesSettings
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_ingestor.cycle import run_cycle
from hubpulse_ingestor.repository import read_history_day
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_ingestor.standalone import open_stores
from hubpulse_scorer.app import create_app as create_scorer_app
from hubpulse_scorer.settings import ScorerSettings

pytestmark = pytest.mark.slow
MODELS, DAYS, PAGE = 120, 3, 25


async def test_every_public_model_once_per_day_none_private_each_served_after_scoring(
    service_env: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_kafka: Any
) -> None:
    # a broker of its own: on the session's, the services' new consumer groups would first read every earlier
    # test's snapshots; the ids are this Hub's own all the same
    service_env = {**service_env, "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url}
    prefix = f"e{uuid.uuid4().hex[:6]}-"
    history = SyntheticHub(MODELS, DAYS, seed=21).history()
    history["model_id"] = prefix + history["model_id"].astype(str)
    path = tmp_path / "hub.csv"
    history.drop(columns=["author", "tags", "last_modified"]).to_csv(path, index=False)
    day0 = history.loc[history["snapshot_date"] == history["snapshot_date"].min()]
    secret, renamed = str(day0["model_id"].iloc[5]), str(day0["model_id"].iloc[9])
    new_name = renamed.replace(prefix, prefix + "new-", 1)
    owner = secret.split("/", 1)[0]
    ranked = day0.sort_values("trending_score")["model_id"].astype(str).tolist()
    live = LiveConfig(
        tokens={"hf_operator": owner},
        private=[secret],
        quota=200,
        window_s=60,
        moves=[ScoreMove(after_requests=3, scores={ranked[0]: 10.0**6, ranked[-1]: -1.0})],
    )
    hub = start_in_thread(create_app(path, page_size=PAGE, live=live))
    monkeypatch.setenv("HF_TOKEN", "hf_operator")  # the operator is logged in: listing must not use it
    try:
        ingest = load_settings(
            IngestorSettings,
            hf_endpoint=hub.url,
            database_url=database_url,
            kafka_bootstrap=service_env["HUBPULSE_KAFKA_BOOTSTRAP"],
            batch_models=40,
        )
        features = settings_for(
            FeaturesSettings, service_env, database_url, day_close_idle_s=1.0, day_close_check_s=0.3
        )
        scorer = settings_for(
            ScorerSettings, service_env, database_url, s3_bucket=f"t-{uuid.uuid4().hex[:10]}", **SMALL_BOOTSTRAP
        )
        gateway = settings_for(GatewaySettings, service_env, database_url)
        dates = [dt.date.fromisoformat(d) for d in sorted(history["snapshot_date"].unique())]
        async with running(create_features_app(features)), running(create_scorer_app(scorer)):
            async with open_stores(ingest) as (pool, bus):
                for d, date in enumerate(dates):
                    if d == 1:
                        httpx.post(
                            f"{hub.url}/_replay/live", json={**live.model_dump(), "renames": {renamed: new_name}}
                        )
                    if d > 0:
                        httpx.post(f"{hub.url}/_replay/advance", json={"days": 1}).raise_for_status()
                    result = await run_cycle(pool, bus, ingest)
                    assert result.status == "completed"
                    public = set(history.loc[history["snapshot_date"] == date.isoformat(), "model_id"]) - {secret}
                    if d >= 1:
                        public = (public - {renamed}) | {new_name}
                    rows = await pool.fetch("SELECT model_id FROM snapshots WHERE snapshot_date = $1", date)
                    stored = [r["model_id"] for r in rows]
                    assert len(stored) == len(set(stored))  # exactly once
                    assert set(stored) == public  # every public model, none private
                    assert result.skipped == {}  # nothing private was even listed: no token was sent
                last = dates[-1]
                public_last = set(stored)
            catalog = await wait_for(
                lambda: fetch(
                    database_url,
                    "SELECT model_id FROM catalog_models WHERE snapshot_date = $1 AND model_id LIKE $2",
                    last,
                    prefix + "%",
                ),
                lambda r: len(r) >= len(public_last),
                timeout_s=180,
            )
            assert {r["model_id"] for r in catalog} == public_last
            await _renamed_history_is_one(pool_url=database_url, old=renamed, new=new_name, days=dates)
        async with running(create_gateway_app(gateway)) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                for model_id in sorted(public_last):
                    response = await client.get(f"/v1/models/{model_id}")
                    assert response.status_code == 200, (model_id, response.text)
                    assert response.json()["model_id"] == model_id
                assert (await client.get(f"/v1/models/{secret}")).status_code == 404
                moved = await client.get(f"/v1/models/{renamed}")
                assert moved.status_code == 307
                assert moved.headers["location"].endswith(f"/v1/models/{new_name}")
                history_of_new = (await client.get(f"/v1/models/{new_name}")).json()["history"]
                assert len(history_of_new) == DAYS  # the history continues under the new name
                found = await client.get("/v1/models", params={"q": renamed.split("/", 1)[1], "limit": 100})
                assert found.status_code == 200, found.text
                listed = {m["model_id"] for m in found.json()["items"]}
                assert new_name in listed
                assert renamed not in listed  # search lists only the new id
    finally:
        hub.stop()


async def _renamed_history_is_one(pool_url: str, old: str, new: str, days: list[dt.date]) -> None:
    """Issue 14: no store keeps rows under the old name, and the renamed model's velocity features continue
    across the rename: they equal compute_features over its whole (unsplit) history."""
    # What the features would be without a rename: the ingestor's history (one model, moved by `_id`) through
    # the batch code, against what the features service stored under the new name.
    pool = await asyncpg.create_pool(pool_url, min_size=1, max_size=1)
    try:
        history = pd.concat([await read_history_day(pool, day) for day in days], ignore_index=True)
    finally:
        await pool.close()
    expected = compute_features(history).set_index(["model_id", "snapshot_date"]).loc[new]
    stored = await fetch(
        pool_url,
        "SELECT f.snapshot_date, f.values, s.columns FROM feature_rows f JOIN feature_sets s USING (feature_set)"
        " WHERE f.model_id = $1 ORDER BY 1",
        new,
    )
    assert [r["snapshot_date"] for r in stored] == days
    got = [dict(zip(row["columns"], row["values"], strict=True)) for row in stored]
    for day, values in zip(days, got, strict=True):
        want = expected.loc[pd.Timestamp(day)]
        for column in TIME_FEATURE_COLUMNS:
            assert values[column] == pytest.approx(want[column], rel=1e-5, abs=1e-6, nan_ok=True), (day, column)
    # e.g. the day-over-day download delta on the day of the rename spans it (missing if the history split)
    assert not np.isnan(got[1]["delta_downloads_24h"])
    assert got[-1]["days_observed_14d"] == len(days)
    tables = ("feature_history", "feature_rows", "catalog_daily", "catalog_models", "catalog_build")
    for table in (*tables, "catalog_details"):
        rows = await fetch(pool_url, f"SELECT count(*) AS n FROM {table} WHERE model_id = $1", old)  # noqa: S608
        assert rows[0]["n"] == 0, table
    daily = await fetch(pool_url, "SELECT snapshot_date FROM catalog_daily WHERE model_id = $1 ORDER BY 1", new)
    assert [r["snapshot_date"] for r in daily] == days  # the scorer's own rows, not the gateway's merge
    scored = await fetch(pool_url, "SELECT snapshot_date FROM catalog_build WHERE model_id = $1 ORDER BY 1", new)
    assert [r["snapshot_date"] for r in scored] == days
