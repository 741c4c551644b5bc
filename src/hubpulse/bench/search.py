"""`hubpulse bench search`: the search API's latency and throughput through a real gateway process.

Starts PostgreSQL and the broker, seeds N synthetic models into the catalog, starts the gateway (several
uvicorn workers), then fires R searches (text + filters + sorts drawn from the seeded ids) at concurrency C
from a keep-alive HTTP/1.1 load generator on loopback, bounded in count and in time.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import numpy as np

from hubpulse.bench.catalog_seed import SCORER_VERSION_TABLE, seed_catalog
from hubpulse.platform.stores import (
    create_database,
    free_port,
    kafka_spec,
    postgres_spec,
    spawn,
    terminate,
    wait_port,
)
from hubpulse_common import db
from hubpulse_common.errors import ConfigError
from hubpulse_common.synthetic import LIBRARIES, PIPELINE_TAGS, SyntheticHub
from hubpulse_scorer.app import MIGRATIONS

SORTS = ("trend", "downloads", "likes", "growth", "created")


@dataclass(frozen=True)
class SearchBenchConfig:
    models: int
    requests: int = 20_000
    concurrency: int = 32
    workers: int = 2
    max_seconds: float = 300.0
    seed: int = 0
    data_dir: Path | None = None


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


async def _one_connection(port: int, paths: list[str], latencies: list[float], deadline: float) -> int:
    """Send the paths one after another on one keep-alive connection; returns the count of non-200 answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        for path in paths:
            if time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
    finally:
        writer.close()
    return errors


async def load(port: int, paths: list[str], concurrency: int, max_seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + max_seconds
    shards = [paths[i::concurrency] for i in range(concurrency)]
    errors = await asyncio.gather(*(_one_connection(port, s, latencies, deadline) for s in shards if s))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": int(sum(errors)),
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        # The load generator shares the cores with the gateway and PostgreSQL: its own CPU share.
        "client_cpu_share": round(cpu / elapsed, 3),
    }


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the gateway exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ConfigError(f"the gateway was not ready within {timeout_s:.0f} s")


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
            asyncio.run(_retry_create(admin))
            started = time.perf_counter()
            seeded = asyncio.run(_seeded_models(pg.url)) if cfg.data_dir is not None else 0
            if seeded:  # a --data-dir seeded by an earlier run: reuse it (seeding 2M takes minutes)
                models = seeded
                asyncio.run(db.migrate(pg.url, MIGRATIONS, SCORER_VERSION_TABLE))
            else:
                models = asyncio.run(seed_catalog(pg.url, cfg.models, history_days=1, seed=cfg.seed)).models
            seed_s = time.perf_counter() - started
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
            with open(logs / "gateway.log", "wb") as log:
                gateway = subprocess.Popen([sys.executable, "-m", "hubpulse_gateway"], env=env, stdout=log, stderr=log)
            procs.append(("gateway", gateway))
            _wait_ready(f"http://127.0.0.1:{port}", gateway, 120)
            hub = SyntheticHub(cfg.models, 8, seed=cfg.seed)
            warmup = search_queries(hub, min(500, cfg.requests), cfg.seed + 1)
            paths = search_queries(hub, cfg.requests, cfg.seed)
            asyncio.run(load(port, warmup, cfg.concurrency, cfg.max_seconds))
            result = asyncio.run(load(port, paths, cfg.concurrency, cfg.max_seconds))
            result["loadavg"] = os.getloadavg()
        finally:
            for name, proc in reversed(procs):
                if name == "gateway":
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                else:
                    terminate(proc, name)
    return {
        "models": models,
        "reused_data": bool(seeded),
        "concurrency": cfg.concurrency,
        "workers": cfg.workers,
        "distinct_queries": len(set(paths)),
        "seed_seconds": round(seed_s, 1),
        "cpu_count": os.cpu_count(),
        **result,
    }


async def _seeded_models(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('catalog_models') IS NULL"):
            return 0
        count: int = await conn.fetchval("SELECT count(*) FROM catalog_models")
        return count
    finally:
        await conn.close()


async def _retry_create(admin_url: str) -> None:
    for _ in range(100):
        try:
            await create_database(admin_url, "hubpulse")
            return
        except (OSError, Exception):
            await asyncio.sleep(0.1)
    raise ConfigError("PostgreSQL never accepted connections")
