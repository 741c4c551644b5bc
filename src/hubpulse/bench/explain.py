"""`hubpulse bench explain`: the model detail's latency with explanations where they are read (issue 21).

Starts PostgreSQL, the broker, S3, the scorer (its registry bootstraps a model) and the gateway; publishes one day of
`--models` model-days with random features to hub.features.v3, waits until the scorer has scored them and swapped
the day in (picks explained in the batches, the first models of each sort at the swap), then reads `--requests`
model details one after another through the gateway: models explained before, models explained on demand (the
first read: the scorer computes it) and the same again (kept in the row). Last, with every stored explanation
cleared, the swap's precompute of the sorts' first models alone (its most work). Random features make ~40 %
picks, far more than the Hub's; the latencies do not depend on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import asyncpg
import httpx
import numpy as np

from hubpulse.bench.configs import ExplainBenchConfig
from hubpulse.bench.pipeline import started_child
from hubpulse.bench.stores import start_stores
from hubpulse.platform.stores import ProcessSpec, Running, free_port, service_spec, wait_ready

DAY = dt.date(2025, 1, 2)
PUBLISH_CHUNK = 20_000


async def _publish(bootstrap: str, models: int) -> None:
    from hubpulse_common.events import FEATURES_BATCH_ROWS, ModelFeatures, ModelFeaturesPacked
    from hubpulse_common.features import FEATURE_COLUMNS
    from hubpulse_common.kafka import EventBus

    rng = np.random.default_rng(0)
    bus = EventBus(bootstrap, "bench-explain")
    await bus.start()
    try:
        for lo in range(0, models, PUBLISH_CHUNK):
            n = min(PUBLISH_CHUNK, models - lo)
            values = rng.normal(scale=2.0, size=(n, len(FEATURE_COLUMNS)))
            values[rng.random(values.shape) < 0.15] = np.nan
            events = [
                ModelFeatures(
                    model_id=f"org{(lo + i) % 997}/model-{lo + i}",
                    snapshot_date=DAY,
                    features={c: (None if np.isnan(v) else v) for c, v in zip(FEATURE_COLUMNS, row, strict=True)},
                    downloads=int(rng.integers(0, 100_000)),
                    likes=int(rng.integers(0, 1_000)),
                    day_models=models,  # the day is complete once all are scored: swapped in at once
                )
                for i, row in enumerate(values.tolist())
            ]
            await bus.publish_many(
                ModelFeaturesPacked.of(events[i : i + FEATURES_BATCH_ROWS])
                for i in range(0, len(events), FEATURES_BATCH_ROWS)
            )
    finally:
        await bus.stop()


async def _swapped(db: str, models: int, timeout_s: float) -> None:
    conn = await asyncpg.connect(db)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if await conn.fetchval(
                "SELECT count(*) FROM catalog_days WHERE swapped_at >= written_at AND built_rows >= $1", models
            ):
                return
            await asyncio.sleep(1)
    finally:
        await conn.close()
    raise TimeoutError(f"the day was not scored and swapped in within {timeout_s:.0f} s")


def _latency(seconds: Sequence[float]) -> dict[str, float | int]:
    ms = np.asarray(seconds) * 1000
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


async def _details(db: str, gateway: str, requests: int) -> dict[str, Any]:
    conn = await asyncpg.connect(db)
    try:
        pick = "SELECT model_id FROM catalog_details WHERE explanation IS {} NULL ORDER BY md5(model_id) LIMIT $1"
        before = [r[0] for r in await conn.fetch(pick.format("NOT"), requests)]
        later = [r[0] for r in await conn.fetch(pick.format(""), requests)]
        unexplained = await conn.fetchval("SELECT count(*) FROM catalog_details WHERE explanation IS NULL")
    finally:
        await conn.close()
    report: dict[str, Any] = {"unexplained_after_swap": unexplained}
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        for _ in range(20):  # connections and the gateway's pool warm
            await http.get(f"/v1/models/{before[0]}")
        for name, ids in (("explained_before", before), ("first_read", later), ("second_read", later)):
            seconds = []
            for model_id in ids:
                start = time.perf_counter()
                answer = await http.get(f"/v1/models/{model_id}")
                seconds.append(time.perf_counter() - start)
                if answer.status_code != 200 or not answer.json()["explanation"]:
                    raise RuntimeError(f"{model_id}: {answer.status_code} {answer.text[:300]}")
            report[name] = _latency(seconds)
    return report


async def _tops_alone(db: str, s3_url: str, top_n: int) -> dict[str, Any]:
    from hubpulse_common.s3 import aws_client
    from hubpulse_common.settings import CommonSettings, load_settings
    from hubpulse_scorer.explanations import Explainer
    from hubpulse_scorer.registry import ModelRegistry

    settings = load_settings(CommonSettings, s3_endpoint=s3_url)
    registry = ModelRegistry(aws_client("s3", settings), settings.s3_bucket)
    pool = await asyncpg.create_pool(db, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("UPDATE catalog_details SET explanation = NULL")  # none precomputed: the most work
            await conn.execute("VACUUM ANALYZE catalog_details")
            start = time.perf_counter()
            rows = await Explainer(pool, registry, lambda: None, 5).precompute_tops(conn, "catalog_models", top_n)
            return {"rows": rows, "seconds": round(time.perf_counter() - start, 3)}
    finally:
        await pool.close()


def run_explain_bench(config: ExplainBenchConfig) -> dict[str, Any]:
    models, top_n = config.models, config.top_n
    report: dict[str, Any] = {
        "models": models,
        "requests": config.requests,
        "explain_top_n": top_n,
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
    }
    with TemporaryDirectory(prefix="hubpulse-bench-explain-") as tmp, ExitStack() as stack:
        work, logs = Path(tmp), Path(tmp) / "logs"

        def start(spec: ProcessSpec, timeout_s: float = 120) -> Running:
            return stack.enter_context(started_child(spec, logs, timeout_s))

        stores = start_stores(start, work)
        env = {**stores.env, "HUBPULSE_EXPLAIN_TOP_N": str(top_n)}
        scorer = start(service_spec("scorer", free_port(), env), 300)
        wait_ready(scorer.spec.url, 600, scorer.proc)  # the registry's bootstrap model is trained and loaded
        began = time.perf_counter()
        asyncio.run(_publish(stores.kafka, models))
        asyncio.run(_swapped(stores.db_url, models, config.timeout_s))
        report["scored_and_swapped_s"] = round(time.perf_counter() - began, 1)
        gateway_env = {**env, "HUBPULSE_SCORER_URL": scorer.spec.url, "HUBPULSE_API_RATE_LIMIT": "1000000/minute"}
        gateway = start(service_spec("gateway", free_port(), gateway_env), 300)
        wait_ready(gateway.spec.url, 300, gateway.proc)
        report["details"] = asyncio.run(_details(stores.db_url, gateway.spec.url, config.requests))
        report["sort_tops_alone"] = asyncio.run(_tops_alone(stores.db_url, stores.s3, top_n))
    report["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return report
