"""`hubpulse bench pipeline`: the synthetic Hub through the real ingestor, features and scorer processes.

Starts PostgreSQL, the broker and S3 (the scorer's model registry) for the run, the replay Hub serving a
synthetic Hub, then features and scorer, then the ingestor (whose first cycle starts at once). Times each
day from the cycle's start until every model of that day has a score in PostgreSQL, then writes the same
snapshot rows with one bare COPY into a plain table: the floor the pipeline is compared with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from hubpulse.platform.stores import (
    ProcessSpec,
    create_database,
    free_port,
    kafka_spec,
    postgres_spec,
    s3_spec,
    spawn,
    terminate,
    wait_port,
)

Say = Callable[[str], None]


@dataclass
class Running:
    spec: ProcessSpec
    pid: int
    stop: Callable[[], None]


def peak_rss_bytes(pid: int) -> int | None:
    """The kernel's high-water mark of resident memory (VmHWM), read while the process still runs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextmanager
def _started(spec: ProcessSpec, logs: Path, timeout_s: float = 120) -> Iterator[Running]:
    proc = spawn(spec, logs / f"{spec.name}.log")
    try:
        if not wait_port(spec.port, timeout_s, proc):
            tail = (logs / f"{spec.name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{spec.name} did not start on port {spec.port}:\n{tail}")
        yield Running(spec, proc.pid, lambda: terminate(proc, spec.name))
    finally:
        terminate(proc, spec.name)


def _service_spec(name: str, port: int, env: dict[str, str]) -> ProcessSpec:
    module = {"ingestor": "hubpulse_ingestor", "features": "hubpulse_features", "scorer": "hubpulse_scorer"}[name]
    return ProcessSpec(
        name=name,
        kind="service",
        port=port,
        url=f"http://127.0.0.1:{port}",
        argv=[sys.executable, "-m", module],
        env={**env, "HUBPULSE_SERVICE_NAME": name, "HUBPULSE_PORT": str(port)},
    )


def _hub_spec(models: int, days: int, port: int) -> ProcessSpec:
    hubpulse = str(Path(sys.executable).parent / "hubpulse")
    argv = [hubpulse, "hub", "serve", "--synthetic", str(models), "--days", str(days)]
    return ProcessSpec(
        name="hub", kind="hub", port=port, url=f"http://127.0.0.1:{port}", argv=[*argv, "--port", str(port)]
    )


def _wait_ready(url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {timeout_s} s")


async def _poll_until(query: str, args: tuple[Any, ...], target: int, db_url: str, timeout_s: float) -> float:
    """Seconds until `query` returns at least `target` (polled every 0.2 s)."""
    start = time.perf_counter()
    conn = await asyncpg.connect(db_url)
    try:
        while time.perf_counter() - start < timeout_s:
            try:
                if (await conn.fetchval(query, *args) or 0) >= target:
                    return time.perf_counter() - start
            except asyncpg.UndefinedTableError:
                pass
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise TimeoutError(f"{query} did not reach {target} within {timeout_s} s")


async def _bare_copy_seconds(db_url: str, day: dt.date) -> tuple[float, int]:
    """One bare COPY of that day's snapshot rows into a plain table (rows read back first, not timed)."""
    conn = await asyncpg.connect(db_url)
    try:
        from hubpulse_ingestor.snapshots import COLUMNS

        rows = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM snapshots WHERE snapshot_date = $1", day)  # noqa: S608
        await conn.execute("DROP TABLE IF EXISTS bench_copy_floor")
        await conn.execute("CREATE TABLE bench_copy_floor (LIKE snapshots INCLUDING DEFAULTS)")
        start = time.perf_counter()
        await conn.copy_records_to_table("bench_copy_floor", records=[tuple(r) for r in rows], columns=COLUMNS)
        return time.perf_counter() - start, len(rows)
    finally:
        await conn.close()


def _cycle(ingestor_url: str) -> dict[str, Any] | None:
    response = httpx.get(f"{ingestor_url}/cycles/latest", timeout=10)
    return response.json() if response.status_code == 200 else None


def _wait_cycle_done(ingestor_url: str, after_id: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cycle = _cycle(ingestor_url)
        if cycle is not None and cycle["cycle_id"] > after_id and cycle["status"] != "running":
            return cycle
        time.sleep(0.1)
    raise TimeoutError(f"the ingestion cycle did not finish within {timeout_s} s")


def run(
    models: int, days: int = 1, *, say: Say = print, timeout_s: float = 1800, stage_timeout_s: float = 300
) -> dict[str, Any]:
    """Run the benchmark and return its report (see module docstring)."""
    from hubpulse_common.synthetic import SyntheticHub

    hub = SyntheticHub(models, days, seed=0)
    day_models = [len(hub.day_columns(d)) for d in range(days)]
    with tempfile.TemporaryDirectory(prefix="hubpulse-bench-") as tmp, ExitStack() as stack:
        work, logs = Path(tmp), Path(tmp) / "logs"
        started = time.perf_counter()
        say("starting PostgreSQL, broker, S3 and the replay Hub")
        pg = stack.enter_context(_started(postgres_spec(work, free_port()), logs))
        kafka = stack.enter_context(_started(kafka_spec(free_port()), logs))
        s3 = stack.enter_context(_started(s3_spec(work, free_port()), logs))
        hub_proc = stack.enter_context(_started(_hub_spec(models, days, free_port()), logs, timeout_s=600))
        admin = pg.spec.url.rsplit("/", 1)[0] + "/postgres"
        asyncio.run(create_database(admin, "bench"))
        db_url = pg.spec.url.rsplit("/", 1)[0] + "/bench"
        env = {
            "HUBPULSE_DATABASE_URL": db_url,
            "HUBPULSE_KAFKA_BOOTSTRAP": kafka.spec.url,
            "HUBPULSE_S3_ENDPOINT": s3.spec.url,
            "HF_ENDPOINT": hub_proc.spec.url,
            "HUBPULSE_INGEST_INTERVAL_S": "86400",
            "HUBPULSE_DAY_CLOSE_IDLE_S": "2",
        }
        procs: dict[str, Running] = {}
        for name in ("features", "scorer"):
            say(f"starting {name}")
            procs[name] = stack.enter_context(_started(_service_spec(name, free_port(), env), logs))
            _wait_ready(procs[name].spec.url)
        setup_s = time.perf_counter() - started
        say("starting the ingestor: its first cycle starts at once")
        ingest_start = time.perf_counter()
        procs["ingestor"] = stack.enter_context(_started(_service_spec("ingestor", free_port(), env), logs))
        per_day: list[dict[str, Any]] = []
        last_cycle = 0
        for d in range(days):
            if d > 0:
                httpx.post(f"{hub_proc.spec.url}/_replay/advance", json={"days": 1}, timeout=120).raise_for_status()
                httpx.post(f"{procs['ingestor'].spec.url}/cycles", timeout=10).raise_for_status()
                ingest_start = time.perf_counter()
            day, n = hub.dates[d], day_models[d]
            cycle = _wait_cycle_done(procs["ingestor"].spec.url, last_cycle, timeout_s)
            last_cycle = cycle["cycle_id"]
            ingested_s = time.perf_counter() - ingest_start
            say(f"day {day}: {cycle['models']:,} snapshots in {ingested_s:.1f} s, waiting for features and scores")
            features_s = (
                asyncio.run(
                    _poll_until(
                        "SELECT count(DISTINCT model_id) FROM feature_rows WHERE snapshot_date = $1",
                        (day,),
                        n,
                        db_url,
                        timeout_s,
                    )
                )
                + ingested_s
            )
            scored_s = (
                asyncio.run(
                    _poll_until(
                        "SELECT count(DISTINCT model_id) FROM scores WHERE snapshot_date = $1",
                        (day,),
                        n,
                        db_url,
                        timeout_s,
                    )
                )
                + features_s
            )
            per_day.append(
                {
                    "date": day.isoformat(),
                    "models": n,
                    "cycle": {k: cycle[k] for k in ("status", "models", "pages", "retries")},
                    "stages_s": {
                        "ingest": ingested_s,
                        "features": features_s - ingested_s,
                        "score": scored_s - features_s,
                    },
                    "end_to_end_s": scored_s,
                }
            )
            say(f"day {day}: scored end to end in {scored_s:.1f} s ({n / scored_s:,.0f} models/s)")
        rss = {name: peak_rss_bytes(p.pid) for name, p in {**procs, "hub": hub_proc}.items()}
        copy_s, copied = asyncio.run(_bare_copy_seconds(db_url, hub.dates[days - 1]))
        total_models = sum(day_models)
        pipeline_s = sum(d["end_to_end_s"] for d in per_day)
        return {
            "models": models,
            "days": days,
            "model_days": total_models,
            "models_per_s": total_models / pipeline_s,
            "end_to_end_s": pipeline_s,
            "copy_floor": {"rows": copied, "seconds": copy_s, "rows_per_s": copied / copy_s},
            "ratio_vs_copy": (per_day[-1]["end_to_end_s"]) / copy_s,
            "stages_s": {
                stage: sum(d["stages_s"][stage] or 0.0 for d in per_day) for stage in ("ingest", "features", "score")
            },
            "per_day": per_day,
            "peak_rss_mb": {k: round(v / 2**20, 1) if v is not None else None for k, v in rss.items()},
            "setup_s": setup_s,
            # a stage counts as run when it covered every model of every day
            "stages_ran": ["replay hub"]
            + [s for s in ("ingest", "features", "score") if all(d["stages_s"][s] is not None for d in per_day)],
        }
