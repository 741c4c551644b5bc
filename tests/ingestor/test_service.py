"""The ingestor as its own process: kill -9 mid-cycle, restart, the cycle resumes and completes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from support.polling import eventually

from hubpulse.platform.stores import free_port, terminate, wait_port

from .conftest import PAGE, Replay, Store, ingestor_env


class Ingestor:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **env, "HUBPULSE_PORT": str(self.port)}
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hubpulse_ingestor"], env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        assert wait_port(self.port, 60, self.proc), self._log.read_text()[-3000:]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, "ingestor")


@pytest.fixture
def ingestor(replay: Replay, database_url: str, kafka: Store, tmp_path: Path) -> Iterator[Ingestor]:
    proc = Ingestor(ingestor_env(replay, database_url, kafka), tmp_path / "ingestor.log")
    yield proc
    proc.stop()


async def _cycle(database_url: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT status, models, resumes FROM ingest_cycles ORDER BY cycle_id DESC LIMIT 1"
        )
        return row
    finally:
        await conn.close()


async def test_kill_9_mid_cycle_resumes_with_one_row_per_model_day(
    replay: Replay, ingestor: Ingestor, database_url: str
) -> None:
    n = replay.models(0)
    replay.post("/_replay/faults", {"rate_slow": 1.0, "slow_seconds": 0.1})  # a walk of a few seconds
    ingestor.start()

    async def checkpointed_some() -> bool:
        cycle = await _cycle(database_url)
        return cycle is not None and 2 * PAGE <= cycle["models"] < n // 2

    await eventually(checkpointed_some, timeout_s=60, interval_s=0.05)
    ingestor.kill9()
    cycle = await _cycle(database_url)
    assert cycle is not None
    assert cycle["status"] == "running"

    ingestor.start()

    async def completed() -> bool:
        latest = httpx.get(f"{ingestor.url}/cycles/latest", timeout=5)
        return latest.status_code == 200 and latest.json()["status"] == "completed"

    await eventually(completed, timeout_s=60, interval_s=0.2)
    latest = httpx.get(f"{ingestor.url}/cycles/latest", timeout=5).json()
    assert latest["resumes"] == 1
    assert latest["models"] == n  # batches count once, however often they were written
    assert latest["snapshot_date"] == replay.day(0).isoformat()
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT model_id) AS m FROM snapshots")
    finally:
        await conn.close()
    assert (rows["n"], rows["m"]) == (n, n)
    metrics = httpx.get(f"{ingestor.url}/metrics", timeout=5).text
    assert 'hubpulse_ingest_models_total{source="hub"}' in metrics
    assert 'hubpulse_ingest_pages_total{outcome="ok"}' in metrics
    assert httpx.get(f"{ingestor.url}/cycles?limit=5", timeout=5).json()[0]["status"] == "completed"
