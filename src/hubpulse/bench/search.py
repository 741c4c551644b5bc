"""`hubpulse bench search`: the search API's latency and throughput through a real gateway process.

Starts PostgreSQL and the broker, seeds N synthetic models into the catalog, starts the gateway (several
uvicorn workers), then fires R searches at concurrency C from a keep-alive HTTP/1.1 load generator on
loopback, bounded in count and in time.

The mix is Zipf-like, as search logs are: `distinct` queries (text + filters + sorts drawn from the seeded
ids), the k-th most popular sent with weight 1/k^s, so a few repeat often and most are rare. It runs twice:
with the gateway's hot-query cache (hit ratio counted from the `x-cache` header of each answer) and with the
cache off, so the uncached cost is reported next to the cached one. CPU seconds of the load generator, the
gateway and PostgreSQL over each run say where the two cores went.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import numpy as np
import uvloop

from hubpulse.bench.catalog_seed import SCORER_VERSION_TABLE, seed_catalog
from hubpulse.bench.catalog_write import CATALOG_TABLES, update_catalog
from hubpulse.bench.configs import SearchBenchConfig
from hubpulse.bench.loadgen import get, load
from hubpulse.platform.stores import (
    StartFailed,
    create_database,
    free_port,
    kafka_spec,
    postgres_spec,
    spawn,
    terminate,
    wait_port,
    wait_ready,
)
from hubpulse_common import db
from hubpulse_common.errors import ConfigError
from hubpulse_common.synthetic import LIBRARIES, PIPELINE_TAGS, SyntheticHub
from hubpulse_scorer.app import MIGRATIONS

SORTS = ("trend", "downloads", "likes", "growth", "created")


def search_queries(hub: SyntheticHub, count: int, seed: int) -> list[str]:
    """Query strings like people type: a word of an existing id (family, size, variant or author) plus filters."""
    rng = random.Random(seed)
    ids = hub.model_id
    tasks = [t for t, _ in PIPELINE_TAGS if t]
    libraries = [lib for lib, _ in LIBRARIES if lib]
    out = []
    for _ in range(count):
        words = [w for w in str(ids[rng.randrange(len(ids))]).replace("/", "-").split("-") if len(w) >= 3]
        params: dict[str, Any] = {"q": rng.choice(words), "sort": rng.choice(SORTS), "limit": 20}
        if rng.random() < 0.5:
            params["task"] = rng.choice(tasks)
        if rng.random() < 0.3:
            params["library"] = rng.choice(libraries)
        if rng.random() < 0.3:
            params["min_downloads"] = rng.choice((10, 100, 1000))
        out.append("/v1/models?" + urlencode(params))
    return out


def zipf_mix(queries: list[str], count: int, s: float, seed: int) -> list[str]:
    """`count` draws from `queries`, the k-th (1-based) with probability proportional to 1/k^s."""
    weights = 1.0 / np.arange(1, len(queries) + 1) ** s
    picks = np.random.default_rng(seed).choice(len(queries), size=count, p=weights / weights.sum())
    return [queries[i] for i in picks.tolist()]


def _start_gateway(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "hubpulse_gateway"], env=env, stdout=log, stderr=log)
    try:
        try:
            wait_ready(f"http://127.0.0.1:{port}", 120, gateway)
        except StartFailed as exc:
            raise ConfigError(f"the gateway did not start: {exc}") from None
    except BaseException:
        _stop_gateway(gateway)
        raise
    return gateway


def _stop_gateway(gateway: subprocess.Popen[bytes]) -> None:
    gateway.send_signal(signal.SIGTERM)
    try:
        gateway.wait(30)
    except subprocess.TimeoutExpired:
        gateway.kill()
        gateway.wait(5)


def _run(
    cfg: SearchBenchConfig,
    env: dict[str, str],
    port: int,
    paths: list[str],
    warmup: list[str],
    log: Path,
    postgres_pid: int,
) -> dict[str, Any]:
    """One gateway (fresh process, so a fresh cache): a warm-up on other queries, then the measured mix."""
    gateway = _start_gateway(env, port, log)
    try:
        watch = {"gateway": gateway.pid, "postgres": postgres_pid}
        uvloop.run(load(port, [get(p) for p in warmup], cfg.concurrency, cfg.max_seconds))
        return uvloop.run(load(port, [get(p) for p in paths], cfg.concurrency, cfg.max_seconds, watch))
    finally:
        _stop_gateway(gateway)


def run_search_bench(cfg: SearchBenchConfig) -> dict[str, Any]:
    """`data_dir` keeps PostgreSQL's files: a later run on the same folder reuses the seeded catalog."""
    with tempfile.TemporaryDirectory(prefix="hubpulse-bench-search-") as tmp:
        data_dir = cfg.data_dir or Path(tmp)
        logs = data_dir / "logs"
        pg = postgres_spec(data_dir, free_port())
        broker = kafka_spec(free_port())
        procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            for spec in (pg, broker):
                proc = spawn(spec, logs / f"{spec.name}.log")
                procs.append((spec.name, proc))
                if not wait_port(spec.port, 60, proc):
                    raise ConfigError(f"{spec.name} did not start; see {logs / spec.name}.log")
            admin = pg.url.rsplit("/", 1)[0] + "/postgres"
            asyncio.run(create_database(admin, "hubpulse"))
            started = time.perf_counter()
            seeded = asyncio.run(_seeded_models(pg.url)) if cfg.data_dir is not None else 0
            if seeded:  # a --data-dir seeded by an earlier run: reuse it (seeding 2M takes minutes)
                models = seeded
                asyncio.run(db.migrate(pg.url, MIGRATIONS, SCORER_VERSION_TABLE))
            else:
                # catalog_details stays empty: search never reads it (the model page does)
                seeded_report = seed_catalog(pg.url, cfg.models, history_days=1, seed=cfg.seed, details=False)
                models = asyncio.run(seeded_report).models
            seed_s = time.perf_counter() - started
            update = asyncio.run(_update(pg.url, cfg)) if cfg.after_update else None
            port = free_port()
            env = {
                **os.environ,
                "HUBPULSE_DATABASE_URL": pg.url,
                "HUBPULSE_KAFKA_BOOTSTRAP": broker.url,
                "HUBPULSE_PORT": str(port),
                "HUBPULSE_WORKERS": str(cfg.workers),
                "HUBPULSE_LOG_LEVEL": "WARNING",
                # One load generator is one client address: lift the per-IP limit, keep the middleware running.
                "HUBPULSE_API_RATE_LIMIT": "100000000/minute",
            }
            hub = SyntheticHub(cfg.models, 8, seed=cfg.seed)
            distinct = search_queries(hub, cfg.distinct or cfg.requests, cfg.seed)
            paths = zipf_mix(distinct, cfg.requests, cfg.zipf_s, cfg.seed)
            warmup = search_queries(hub, min(500, cfg.requests), cfg.seed + 1)
            postgres_pid = procs[0][1].pid
            log = logs / "gateway.log"
            cached = _run(cfg, env, port, paths, warmup, log, postgres_pid)
            uncached_paths = paths[: cfg.uncached_requests or cfg.requests]
            uncached_env = {**env, "HUBPULSE_SEARCH_CACHE_SIZE": "0"}
            uncached = _run(cfg, uncached_env, port, uncached_paths, warmup, log, postgres_pid)
            if cfg.after_update:  # leave a reusable --data-dir vacuumed, as after a quiet night
                asyncio.run(_vacuum(pg.url))
        finally:
            for name, proc in reversed(procs):
                terminate(proc, name)
    return {
        "models": models,
        "reused_data": bool(seeded),
        "concurrency": cfg.concurrency,
        "workers": cfg.workers,
        "mix": {
            "distinct_queries": len(distinct),
            "zipf_s": cfg.zipf_s,
            "distinct_sent": len(set(paths)),
            "top_query_share": round(paths.count(distinct[0]) / len(paths), 4),
        },
        "seed_seconds": round(seed_s, 1),
        "after_update": update,
        "cpu_count": os.cpu_count(),
        # The headline: the realistic mix with the hot-query cache (each worker process has its own).
        **cached,
        "cached": cached,
        "uncached": uncached,
    }


async def _update(url: str, cfg: SearchBenchConfig) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        for table in CATALOG_TABLES:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    finally:
        await conn.close()
    return await update_catalog(url, cfg.models, cfg.seed)


async def _vacuum(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for table in CATALOG_TABLES:
            await conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


async def _seeded_models(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('catalog_models') IS NULL"):
            return 0
        count: int = await conn.fetchval("SELECT count(*) FROM catalog_models")
        return count
    finally:
        await conn.close()
