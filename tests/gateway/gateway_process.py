"""A real gateway process over a seeded catalog database, shared by the gateway, web and fuzz tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson
import pytest
from conftest import fresh_database

from hubpulse.bench.catalog_seed import SeedReport, seed_catalog
from hubpulse.platform.stores import free_port, wait_port
from hubpulse_common import feature_vectors
from hubpulse_common.feature_vectors import FeatureSet
from hubpulse_scorer.repository import add_feature_sets

SEED_MODELS = 3000

# Hand-made rows next to the synthetic ones: an explanation to render, and unscored models (null sorts).
EXPLAINED_ID = "acme-lab/explained-model-7b"
UNSCORED_IDS = ("zz-unscored/one", "zz-unscored/two", "zz-unscored/three")


@dataclass(frozen=True)
class Gateway:
    url: str
    database_url: str
    seed: SeedReport


async def add_special_rows(database_url: str, snapshot_date: dt.date) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        explanation = [
            {"feature": "likes_7d", "value": 420.0, "contribution": 1.3},
            {"feature": "log_downloads", "value": 6.2, "contribution": -0.4},
        ]
        await conn.execute(
            "INSERT INTO catalog_models (model_id, author, pipeline_tag, library_name, tags, created_at, snapshot_date,"
            " downloads, likes, growth_7d, probability, model_version, label, threshold, likes_7d)"
            " VALUES ($1, 'acme-lab', 'text-generation', 'transformers', ARRAY['transformers', 'text-generation'],"
            " now() - interval '3 days', $2, 5000, 600, 1.5, 0.91, 'v-test', 'trending', 0.45, 420.0)",
            EXPLAINED_ID,
            snapshot_date,
        )
        feature_set = FeatureSet(("likes_7d", "log_downloads"))
        await add_feature_sets(conn, [feature_set])
        await conn.execute(
            "INSERT INTO catalog_details (model_id, snapshot_date, explanation, feature_set, features)"
            " VALUES ($1, $2, $3, $4, $5)",
            EXPLAINED_ID,
            snapshot_date,
            orjson.dumps(explanation).decode(),
            feature_set.key,
            feature_vectors.encode(np.array([[420.0, 6.2]]))[0],
        )
        await conn.executemany(
            "INSERT INTO catalog_daily (model_id, snapshot_date, downloads, likes, probability)"
            " VALUES ($1, $2, $3, $4, $5)",
            [
                (EXPLAINED_ID, snapshot_date - dt.timedelta(days=k), 5000 - 400 * k, 600 - 60 * k, 0.91 - 0.1 * k)
                for k in range(5)
            ],
        )
        await conn.executemany(
            "INSERT INTO catalog_models (model_id, snapshot_date, downloads, likes) VALUES ($1, $2, $3, 0)",
            [(mid, snapshot_date, 10 * i) for i, mid in enumerate(UNSCORED_IDS)],
        )
    finally:
        await conn.close()


async def seeded_database(database_url: str) -> SeedReport:
    report = await seed_catalog(database_url, SEED_MODELS, days=8, history_days=8)
    await add_special_rows(database_url, report.snapshot_date)
    return report


async def run_gateway(database_url: str, kafka_url: str, seed: SeedReport, logs: Path) -> AsyncIterator[Gateway]:
    port = free_port()
    env = {
        **os.environ,
        "HUBPULSE_DATABASE_URL": database_url,
        "HUBPULSE_KAFKA_BOOTSTRAP": kafka_url,
        "HUBPULSE_PORT": str(port),
        "HUBPULSE_ENVIRONMENT": "test",
        "HUBPULSE_LOG_FORMAT": "console",
        "HUBPULSE_LIVE_POLL_S": "0.2",
        "HUBPULSE_SEARCH_CACHE_TTL_S": "2",
        "HUBPULSE_API_RATE_LIMIT": "100000/minute",  # tests page fast from one address
    }
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(logs, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hubpulse_gateway"], env=env, stdout=log, stderr=log)
    try:
        up = await asyncio.to_thread(wait_port, port, 180, proc)
        assert up, logs.read_text(errors="replace")[-3000:]
        yield Gateway(f"http://127.0.0.1:{port}", database_url, seed)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)


@pytest.fixture(scope="session")
async def gateway(postgres: Any, kafka: Any, store_dir: Path) -> AsyncIterator[Gateway]:
    """One gateway process for the session, over a catalog of synthetic plus hand-made models."""
    database_url = await fresh_database(postgres, "gateway_catalog")
    seed = await seeded_database(database_url)
    async for gw in run_gateway(database_url, kafka.url, seed, store_dir / "logs" / "gateway.log"):
        yield gw
