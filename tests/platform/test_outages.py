"""A store restarted under the running pipeline (ingestor -> features -> scorer, each its own process) loses
nothing, duplicates nothing and dead-letters nothing.

- PostgreSQL: the postmaster is stopped (fast shutdown) and started again on the same port and data folder.
- The broker: Tansu is stopped and started again on the same port; its storage is S3 (the session's moto), so
  its topics and committed offsets survive like a real Kafka's do (the memory engine would lose them).

While the store is down every service's /readyz says not ready. After the restart, every model-day has exactly
one snapshot, one feature row and one score, and the DLQs of both pipeline topics are empty. Everything waits
on conditions with deadlines (the machine may be slow), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from conftest import fresh_database
from support.polling import wait_for

from hubpulse.hub import create_app as create_hub_app
from hubpulse.hub import start_in_thread
from hubpulse.platform.stores import (
    ProcessSpec,
    create_database,
    free_port,
    kafka_spec,
    postgres_spec,
    spawn,
    terminate,
    wait_port,
)
from hubpulse_common.events import ModelFeaturesPacked, ModelSnapshotBatch, dlq_topic
from hubpulse_common.s3 import aws_client, ensure_bucket
from hubpulse_common.settings import CommonSettings, load_settings
from hubpulse_common.synthetic import SyntheticHub

N_MODELS, DAYS = 300, 4
SERVICES = ("ingestor", "features", "scorer")


@dataclass
class Restartable:
    """A store process that the test stops and starts again, same port and data."""

    spec: ProcessSpec
    logs: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = spawn(self.spec, self.logs / f"{self.spec.name}.log")
        if not wait_port(self.spec.port, 60, self.proc):
            raise AssertionError(f"{self.spec.name} did not start: {(self.logs / f'{self.spec.name}.log').read_text()}")

    def stop(self) -> None:
        assert self.proc is not None
        terminate(self.proc, self.spec.name)


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Restartable]:
    # Not under tmp_path: every pytest session that starts resets /tmp/pytest-of-<user> to mode 0700, which
    # locks PostgreSQL's unprivileged user out of the data folder when it starts again.
    data = Path(tempfile.mkdtemp(prefix="hubpulse-outage-pg-"))
    data.chmod(0o755)
    store = Restartable(postgres_spec(data, free_port(), {"shared_buffers": "128MB"}), tmp_path / "logs")
    try:
        store.start()
        asyncio.run(create_database(store.spec.url.rsplit("/", 1)[0] + "/postgres", "hubpulse"))
        yield store
    finally:
        if store.proc is not None:
            terminate(store.proc, "postgres")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def durable_kafka(tmp_path: Path, s3: Any) -> Iterator[Restartable]:
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    ensure_bucket(aws_client("s3", load_settings(CommonSettings, s3_endpoint=s3.url)), bucket)
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT": s3.url,
        "AWS_ALLOW_HTTP": "true",
    }
    store = Restartable(kafka_spec(free_port(), storage=f"s3://{bucket}/", env=env), tmp_path / "logs")
    store.start()
    yield store
    if store.proc is not None:
        terminate(store.proc, "kafka")


@dataclass
class Pipeline:
    urls: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]]
    database_url: str
    bootstrap: str
    hub: SyntheticHub
    replay_url: str

    async def readiness(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        async with httpx.AsyncClient(timeout=5) as client:
            for name, url in self.urls.items():
                try:
                    out[name] = (await client.get(f"{url}/readyz")).json()
                except httpx.HTTPError as exc:
                    out[name] = {"status": f"unreachable: {exc!r}"}
        return out

    async def counts(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return {
                table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - fixed names
                for table in ("snapshots", "feature_rows", "catalog_daily")
            }
        finally:
            await conn.close()


def _service(name: str, env: dict[str, str], logs: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"hubpulse_{name}"],
            env={**os.environ, **env, "HUBPULSE_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()
    if not wait_port(port, 120, proc):
        raise AssertionError(f"{name} did not start:\n{(logs / f'{name}.log').read_text()[-3000:]}")
    return f"http://127.0.0.1:{port}", proc


@asynccontextmanager
async def _pipeline(database_url: str, bootstrap: str, s3_url: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    hub = SyntheticHub(N_MODELS, DAYS, seed=3)
    replay = start_in_thread(create_hub_app(hub, page_size=50))
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    env = {
        "HF_ENDPOINT": replay.url,
        "HUBPULSE_DATABASE_URL": database_url,
        "HUBPULSE_KAFKA_BOOTSTRAP": bootstrap,
        "HUBPULSE_S3_ENDPOINT": s3_url,
        "HUBPULSE_S3_BUCKET": f"t-{uuid.uuid4().hex[:10]}",
        "HUBPULSE_ENVIRONMENT": "test",
        "HUBPULSE_LOG_FORMAT": "console",
        "HUBPULSE_KAFKA_PARTITIONS": "2",
        # a cycle at start, then only when the test asks (POST /cycles); many small writes
        "HUBPULSE_INGEST_INTERVAL_S": "3600",
        "HUBPULSE_BATCH_MODELS": "100",
        "HUBPULSE_HTTP_BASE_WAIT_S": "0.01",
        "HUBPULSE_PAGE_RETRY_WAIT_S": "0.01",
        "HUBPULSE_BATCH_SIZE": "100",
        "HUBPULSE_DAY_CLOSE_IDLE_S": "1",
        "HUBPULSE_DAY_CLOSE_CHECK_S": "0.3",
        "HUBPULSE_MODEL_POLL_S": "0.5",
        # the scorer trains its bootstrap model on start (empty registry): small, seconds
        "HUBPULSE_BOOTSTRAP_MODELS": "1500",
        "HUBPULSE_BOOTSTRAP_DAYS": "50",
    }
    urls: dict[str, str] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in SERVICES:
            urls[name], procs[name] = _service(name, env, logs)
        yield Pipeline(urls, procs, database_url, bootstrap, hub, replay.url)
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"{name} did not stop on SIGTERM")
        replay.stop()


def _expected(hub: SyntheticHub) -> int:
    return sum(len(hub.day(d)) for d in range(DAYS))


async def _completed(pipeline: Pipeline, day: int) -> None:
    """Wait until the ingestor completed a cycle of day `day` of the hub."""
    date = pipeline.hub.dates[day].isoformat()

    async def latest() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                response = await client.get(f"{pipeline.urls['ingestor']}/cycles/latest")
            except httpx.HTTPError as exc:
                return {"error": repr(exc)}
            return response.json() if response.status_code == 200 else {"status": response.status_code}

    await wait_for(
        latest,
        lambda c: c.get("status") == "completed" and c.get("snapshot_date") == date,
        180,
        what=f"a completed cycle of {date}",
    )


async def _next_day(pipeline: Pipeline) -> None:
    """Move the hub to its next day and ask the ingestor for a cycle now."""
    async with httpx.AsyncClient(timeout=30) as client:
        (await client.post(f"{pipeline.replay_url}/_replay/advance", json={})).raise_for_status()
        (await client.post(f"{pipeline.urls['ingestor']}/cycles")).raise_for_status()


async def _dlq_sizes(bootstrap: str) -> dict[str, int]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        await reader.topics()
        sizes = {}
        for topic in (dlq_topic(ModelSnapshotBatch.topic), dlq_topic(ModelFeaturesPacked.topic)):
            parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
            assert parts, f"{topic} does not exist"
            begin, end = await reader.beginning_offsets(parts), await reader.end_offsets(parts)
            sizes[topic] = sum(end[tp] - begin[tp] for tp in parts)
        return sizes
    finally:
        await reader.stop()


async def _assert_exact(pipeline: Pipeline) -> None:
    expected = _expected(pipeline.hub)
    await wait_for(pipeline.counts, lambda c: c["catalog_daily"] >= expected, 240, what="every model-day scored")
    conn = await asyncpg.connect(pipeline.database_url)
    try:
        for table in ("snapshots", "feature_rows", "catalog_daily"):
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, count(DISTINCT (model_id, snapshot_date)) AS d FROM {table}"  # noqa: S608
            )
            assert (table, row["n"], row["d"]) == (table, expected, expected)
        assert await conn.fetchval("SELECT count(*) FROM feature_rows WHERE provisional") == 0
    finally:
        await conn.close()
    assert await _dlq_sizes(pipeline.bootstrap) == {
        dlq_topic(ModelSnapshotBatch.topic): 0,
        dlq_topic(ModelFeaturesPacked.topic): 0,
    }
    ready = await wait_for(
        pipeline.readiness, lambda r: all(s.get("status") == "ready" for s in r.values()), 60, what="all ready again"
    )
    assert all(
        f"task:consume:{t}" in ready[s]["checks"]
        for s, t in (("features", ModelSnapshotBatch.topic), ("scorer", ModelFeaturesPacked.topic))
    )
    assert "task:ingest-scheduler" in ready["ingestor"]["checks"]


async def _outage(pipeline: Pipeline, store: Restartable) -> dict[str, dict[str, Any]]:
    """Stop `store`, ask for the next day's cycle meanwhile, wait until every service reports not ready, start
    the store again. Returns what their /readyz said while it was down."""
    store.stop()
    await _next_day(pipeline)  # the scheduler wakes into the outage (H2: this killed it for good)
    seen = await wait_for(
        pipeline.readiness,
        lambda r: all(r[s].get("status") == "not_ready" for s in SERVICES),
        60,
        what=f"every service not ready while {store.spec.name} is down",
    )
    await asyncio.to_thread(store.start)
    return seen


async def _run_days_with_an_outage(pipeline: Pipeline, store: Restartable, check: str) -> None:
    await _completed(pipeline, 0)
    await _next_day(pipeline)
    # mid-stream: day 1 is walked and published while day 0 closes and is scored
    await _completed(pipeline, 1)
    seen = await _outage(pipeline, store)
    assert all(seen[s]["checks"][check] != "ok" for s in SERVICES), seen
    for day in range(2, DAYS):  # cycles go on after the restart: the scheduler survived it
        await _completed(pipeline, day)
        if day + 1 < DAYS:
            await _next_day(pipeline)
    await _assert_exact(pipeline)


# each ran in 150-200 s on the 2-core machine shared with other test runs; the suite's 300 s default is too tight
@pytest.mark.timeout(900)
async def test_postgres_restart_under_the_pipeline_loses_and_duplicates_nothing(
    own_postgres: Restartable, own_kafka: Any, s3: Any, tmp_path: Path
) -> None:
    async with _pipeline(own_postgres.spec.url, own_kafka.url, s3.url, tmp_path) as pipeline:
        await _run_days_with_an_outage(pipeline, own_postgres, "postgres")


@pytest.mark.timeout(900)
async def test_broker_restart_under_the_pipeline_loses_and_duplicates_nothing(
    postgres: Any, durable_kafka: Restartable, s3: Any, tmp_path: Path
) -> None:
    database_url = await fresh_database(postgres, f"outage_{uuid.uuid4().hex[:8]}")
    async with _pipeline(database_url, durable_kafka.spec.url, s3.url, tmp_path) as pipeline:
        await _run_days_with_an_outage(pipeline, durable_kafka, "kafka")
