"""`hubpulse bench pipeline`: the synthetic Hub through the real ingestor, features and scorer processes.

Starts PostgreSQL, the broker and S3 (the scorer's model registry) for the run, the replay Hub serving a
synthetic Hub, then features and scorer, then the ingestor (whose first cycle starts at once). For each day,
times from the cycle's start (its `started_at`) until the cycle finished (ingest), until the features service
closed the day with every model's final features (features), until every model has a score (score) and until the
scorer swapped in the search read model holding the day (catalog: the end of the day's pipeline); the
report lists the statements PostgreSQL spent its time on (pg_stat_statements). It then writes the same
snapshot rows with one bare COPY into a plain table: the floor the pipeline is compared with (`ratio_vs_copy`).

`--catch-up` runs a backfill instead: the ingestor alone walks every day, then features and scorers start on the
backlog; the report's `catch_up` gives the seconds from their start until every day is closed and until the last
day's catalog is swapped in, and the closes it took (a day closed before all its rows were read closes again).

Robustness: every child runs in its own process group and is stopped, with its group, whatever happens
(try/finally; SIGTERM unwinds like Ctrl-C); each stage has its own timeout; the report is returned even when
a stage failed (`ok: false`, `error`), so the JSON is always written. A sampler thread records peak resident
memory (process and process tree) and CPU seconds of every child, and PostgreSQL's CPU by whom it worked for
(`postgres_cpu_s`: each service's connections, by the name they give, and PostgreSQL's own processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import psutil

from hubpulse.bench.stores import start_stores
from hubpulse.platform.stores import (
    BUILTIN_LOCALE,
    ProcessSpec,
    Running,
    free_port,
    service_spec,
    start,
    terminate,
    wait_ready,
)
from hubpulse_common.processes import log_tail

if TYPE_CHECKING:
    from hubpulse_common.synthetic import SyntheticHub

Say = Callable[[str], None]
SERVICES = ("ingestor", "features", "scorer")
STAGES = ("ingest", "features", "score", "catalog")


class StageTimeout(TimeoutError):
    pass


@dataclass(frozen=True)
class Options:
    """How a run goes: its replicas, how long a stage may take, how often progress is polled, where it is said, and
    the PostgreSQL it runs on."""

    scorers: int = 2
    stage_timeout_s: float = 600
    poll_s: float = 0.5
    say: Say = print
    # ingest every day first, then start features and scorers on the backlog (a backfill, an outage's end)
    catch_up: bool = False
    features: int = 1
    # PostgreSQL's cluster collation (`platform.stores.BUILTIN_LOCALE`, or a libc locale such as the postgres image's)
    pg_locale: str = BUILTIN_LOCALE
    # server settings over the embedded cluster's (`platform.stores.postgres_spec`): a production server's, say
    pg_settings: Mapping[str, str] = field(default_factory=dict)


def replicas(service: str, n: int) -> list[str]:
    """The process names of `n` replicas of a service (one consumer group): `scorer`, `scorer-2`, ..."""
    return [service, *(f"{service}-{i}" for i in range(2, n + 1))]


def peak_rss_bytes(pid: int) -> int | None:
    """The kernel's high-water mark of resident memory (VmHWM), read while the process still runs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _group_left(pgid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of a process group."""
    left = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
    return left


def _kill_group(pid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL whatever is left of the child's process group (spawn gives each child its own session), and wait
    until it is gone: the bench removes the child's data folder next (a 2M run's removal once met a pg_wal that
    was still being written, most likely by PostgreSQL processes SIGKILLed in their shutdown checkpoint)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while _group_left(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_child(proc: subprocess.Popen[bytes], name: str) -> None:
    """Graceful stop of the leader (SIGINT for PostgreSQL, SIGTERM else, then SIGKILL), then its whole group."""
    try:
        terminate(proc, name)
    finally:
        _kill_group(proc.pid)


@contextmanager
def started_child(spec: ProcessSpec, logs: Path, timeout_s: float = 120) -> Iterator[Running]:
    """A child for the length of the block, stopped with its whole group (also when it did not start)."""
    child = start(spec, logs, timeout_s, stop=stop_child)
    try:
        yield child
    finally:
        stop_child(child.proc, spec.name)


# PostgreSQL's own processes, by the title they run under (the rest of a title names a database or a number)
_POSTGRES_ROLES = (
    "autovacuum worker",
    "autovacuum launcher",
    "io worker",
    "walwriter",
    "checkpointer",
    "background writer",
    "logical replication launcher",
)


def _postgres_kind(process: psutil.Process) -> str:
    """What a PostgreSQL process is, from its title: `client` (a connection's backend), `leader <pid>` (a parallel
    worker), else its own role (`postgres: walwriter`...)."""
    argv = process.cmdline()
    if not argv or not argv[0].startswith("postgres:"):  # the postmaster keeps its own command line
        return "postgres: postmaster"
    title = " ".join(argv).removeprefix("postgres: ").strip()
    if (leader := re.match(r"parallel worker for PID (\d+)", title)) is not None:
        return f"leader {leader[1]}"
    if re.search(r"\(\d+\)", title):  # user database host(port) state
        return "client"
    return "postgres: " + (next((k for k in _POSTGRES_ROLES if title.startswith(k)), title) or "starting")


class BackendNames(threading.Thread):
    """Which service each PostgreSQL backend works for: `pg_stat_activity`'s application_name (every service's
    pool sets its name), read each second while the bench runs."""

    def __init__(self, db_url: str, interval_s: float = 1.0) -> None:
        super().__init__(name="bench-backend-names", daemon=True)
        self._db_url, self._interval_s = db_url, interval_s
        self._halt = threading.Event()
        self.names: dict[int, str] = {}

    async def _poll(self) -> None:
        while True:  # the server may still be starting up
            try:
                conn = await asyncpg.connect(self._db_url)
                break
            except (OSError, asyncpg.PostgresError):
                if self._halt.wait(0.2):
                    return
        try:
            while not self._halt.is_set():
                rows = await conn.fetch(
                    "SELECT pid, application_name FROM pg_stat_activity WHERE backend_type = 'client backend'"
                )
                self.names |= {r["pid"]: r["application_name"] for r in rows if r["application_name"]}
                await asyncio.sleep(self._interval_s)
        finally:
            await conn.close()

    def run(self) -> None:
        # the server stopped (its connection closed under a read, which asyncpg may report as any of these): the
        # names so far stand
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError):
            asyncio.run(self._poll())

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class Sampler(threading.Thread):
    """Peak RSS of each child (alone and with its descendants, e.g. PostgreSQL backends) and its CPU seconds."""

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self._interval_s = interval_s
        self._procs: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()  # not `_stop`: Thread has a method of that name
        self.peak: dict[str, int] = {}
        self.peak_tree: dict[str, int] = {}
        self.cpu_s: dict[str, float] = {}
        self._tree_cpu: dict[str, dict[int, float]] = {}
        self._known: dict[int, psutil.Process] = {}  # descendants met before (their CPU read from the same object)
        self._postgres: str | None = None  # the child that is PostgreSQL, if any
        self._kind: dict[int, str] = {}  # each of its processes' kind (`_postgres_kind`)
        self._names: BackendNames | None = None

    def watch(self, name: str, pid: int, *, postgres_url: str | None = None) -> None:
        """`postgres_url`: the child is PostgreSQL (a URL to it); its CPU is then also told apart by whom each of
        its processes worked for (`postgres_cpu_s`)."""
        with contextlib.suppress(psutil.Error), self._lock:
            self._procs[name] = psutil.Process(pid)
        if postgres_url is not None:
            self._postgres, self._names = name, BackendNames(postgres_url, self._interval_s)
            self._names.start()

    def postgres_cpu_s(self) -> dict[str, float]:
        """PostgreSQL's CPU seconds by whom they were for, most first: a client's backend under its connection's
        application_name (`bench` for the bench's own, which give none), a parallel worker under its leader's, the
        rest under their role."""

        def kind_of(pid: int) -> str:
            kind = self._kind.get(pid, "postgres")
            if kind.startswith("leader "):
                return kind_of(int(kind.split()[1]))
            if kind == "client":
                return (self._names.names.get(pid) if self._names else None) or "bench"
            return kind

        totals: dict[str, float] = {}
        for pid, seconds in self._tree_cpu.get(self._postgres or "", {}).items():
            kind = kind_of(pid)
            totals[kind] = totals.get(kind, 0.0) + seconds
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def sample(self) -> None:
        """One pass over the process table for every child's tree: on two cores the bench shares with what it
        measures, a scan of /proc per child and tick (psutil's `children()`) took ~15 % of a core."""
        with self._lock:
            procs = dict(self._procs)
        children: dict[int, list[int]] = {}
        live: set[int] = set()
        for p in psutil.process_iter(["ppid"]):
            children.setdefault(p.info["ppid"], []).append(p.pid)
            live.add(p.pid)
        for name, proc in procs.items():
            members = [proc.pid]
            for pid in members:  # grows as it goes: the whole tree, breadth first
                members.extend(children.get(pid, ()))
            tree, cpu = 0, self._tree_cpu.setdefault(name, {})
            for pid in members:
                try:
                    member = (
                        proc
                        if pid == proc.pid
                        else self._known.get(pid) or self._known.setdefault(pid, psutil.Process(pid))
                    )
                    with member.oneshot():
                        rss, times = member.memory_info().rss, member.cpu_times()
                except psutil.Error:  # gone since the scan
                    continue
                tree += rss
                cpu[pid] = times.user + times.system
                if name == self._postgres and pid != proc.pid and pid not in self._kind:
                    with contextlib.suppress(psutil.Error):
                        self._kind[pid] = _postgres_kind(member)
                if pid == proc.pid:
                    self.peak[name] = max(self.peak.get(name, 0), rss)
            self.peak_tree[name] = max(self.peak_tree.get(name, 0), tree)
            self.cpu_s[name] = sum(cpu.values())
        # PostgreSQL's backends come and go: forget the exited ones (their CPU stays in `_tree_cpu`)
        self._known = {pid: p for pid, p in self._known.items() if pid in live}

    def run(self) -> None:
        while not self._halt.wait(self._interval_s):
            self.sample()

    def stop(self) -> None:
        """A last sample, then no more (once: later calls do nothing). Called while the children still run, so
        that the names reader ends before PostgreSQL does."""
        if self._halt.is_set():
            return
        self._halt.set()
        self.sample()
        if self._names is not None:
            self._names.stop()


def _service_spec(name: str, port: int, env: dict[str, str]) -> ProcessSpec:
    """A service process; `scorer-2`, `scorer-3`... are further replicas of `scorer` (same consumer group)."""
    return service_spec(name.split("-", 1)[0], port, env, name=name)


def _hub_spec(models: int, days: int, port: int) -> ProcessSpec:
    hubpulse = str(Path(sys.executable).parent / "hubpulse")
    argv = [hubpulse, "hub", "serve", "--synthetic", str(models), "--days", str(days)]
    return ProcessSpec(
        name="hub", kind="hub", port=port, url=f"http://127.0.0.1:{port}", argv=[*argv, "--port", str(port)]
    )


async def _bare_copy_seconds(db_url: str, day: dt.date) -> tuple[float, int]:
    """One bare COPY of that day's snapshot rows into a plain table (rows read back first, not timed)."""
    from hubpulse_ingestor.snapshots import COLUMNS

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM snapshots WHERE snapshot_date = $1", day)  # noqa: S608
        await conn.execute("DROP TABLE IF EXISTS bench_copy_floor")
        await conn.execute("CREATE TABLE bench_copy_floor (LIKE snapshots INCLUDING DEFAULTS)")
        start = time.perf_counter()
        await conn.copy_records_to_table("bench_copy_floor", records=[tuple(r) for r in rows], columns=COLUMNS)
        return time.perf_counter() - start, len(rows)
    finally:
        await conn.close()


async def _top_statements(db_url: str, limit: int = 10) -> list[dict[str, Any]]:
    """The statements PostgreSQL spent the most execution time on during the run (pg_stat_statements)."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rows = await conn.fetch(
            "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1",
            limit,
        )
    finally:
        await conn.close()
    return [
        {
            "seconds": round(r["total_exec_time"] / 1000, 2),
            "calls": r["calls"],
            "rows": r["rows"],
            "query": " ".join(r["query"].split())[:160],
        }
        for r in rows
    ]


async def _wal_written(db_url: str) -> dict[str, Any]:
    """What the run wrote to PostgreSQL's WAL since the server started (the bench's own): records, full-page images
    (each checkpoint makes the next write of every page log the whole page) and bytes, and the checkpoints."""
    conn = await asyncpg.connect(db_url)
    try:
        wal = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
        checkpoints = await conn.fetchrow("SELECT num_timed, num_requested FROM pg_stat_checkpointer")
    finally:
        await conn.close()
    assert wal is not None
    assert checkpoints is not None
    return {
        "records": wal["wal_records"],
        "full_page_images": wal["wal_fpi"],
        "bytes": int(wal["wal_bytes"]),
        "checkpoints": {"timed": checkpoints["num_timed"], "requested": checkpoints["num_requested"]},
    }


# A day's features are done when the features service has closed it with every model (it emits each
# model-day once, final, at the close); its scores when the day's catalog build holds a row per model (a
# model-day's one scored row). Polling count(*) over millions of rows would load the database being measured,
# so the scorer's own counter gates the one count that confirms it.
_FEATURES_CLOSED = "SELECT models FROM feature_days WHERE snapshot_date = $1 AND closed_at IS NOT NULL"
# From the day's last batch (its transaction's start) to the close's write (its transaction's start, after the
# ranks): the wait before the close (for the ingestor's signal, or the idle rule), that batch and the ranks.
_CLOSE_AFTER_LAST_BATCH = (
    "SELECT extract(epoch FROM closed_at - last_event_at) FROM feature_days WHERE snapshot_date = $1"
)
_SCORES = "SELECT count(*) FROM catalog_build WHERE snapshot_date = $1"
# ... and its catalog when the scorer has swapped in the read model holding all of them (search serves it).
_CATALOG_SWAPPED = "SELECT built_rows FROM catalog_days WHERE snapshot_date = $1 AND swapped_at >= written_at"
_SCORED_METRIC = "hubpulse_scorer_scored_total"
_CLOSES_METRIC = "hubpulse_features_days_closed_total"


@dataclass
class DayTimes:
    """Seconds from the cycle's start until each stage covered every model of the day."""

    done_at: dict[str, float] = field(default_factory=dict)
    cycle: dict[str, Any] | None = None
    close_after_last_batch_s: float | None = None
    closes: int | None = None  # days the features service had closed by then (all days, reopened ones again)


async def _value(conn: asyncpg.Connection, query: str, day: dt.date) -> int:
    try:
        return int(await conn.fetchval(query, day) or 0)
    except asyncpg.UndefinedTableError:
        return 0


async def metric_total(client: httpx.AsyncClient, urls: list[str], name: str) -> float:
    """A counter summed over its series and over these processes (their Prometheus /metrics)."""
    total = 0.0
    for url in urls:
        response = await client.get(f"{url}/metrics")
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in response.text.splitlines()
            if line.startswith((name + "{", name + " "))
        )
    return total


async def scored_total(client: httpx.AsyncClient, scorer_urls: list[str]) -> float:
    """Model-days the scorer replicas have scored since they started (their counters, all versions)."""
    return await metric_total(client, scorer_urls, _SCORED_METRIC)


class DayTracker:
    """One day's way through the stages: polls the cycle (HTTP), the day's close (SQL) and the scores until every
    stage is done. The stage times, the cycle's start and the scorer count it started from are fields; each
    stage's check is a method.

    A stage fails with StageTimeout when it is not done `stage_timeout_s` after the previous one finished
    (the first: after the cycle started)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        client: httpx.AsyncClient,
        urls: dict[str, str],
        scorer_urls: list[str],
        day: dt.date,
        models: int,
        *,
        stage_timeout_s: float,
        say: Say,
    ) -> None:
        self._conn, self._client, self._urls, self._scorer_urls = conn, client, urls, scorer_urls
        self._day, self._models = day, models
        self._stage_timeout_s, self._say = stage_timeout_s, say
        self.times = DayTimes()
        self._started_at: float | None = None
        self._waiting_since = time.time()
        self._scored_before = 0.0

    def _done(self, stage: str, at: float) -> None:
        self.times.done_at[stage] = at
        if stage != "ingest":
            self._say(f"{self._day}: {stage} done at {at:.1f} s")

    async def _check_ingest(self, after_cycle: int) -> None:
        response = await self._client.get(f"{self._urls['ingestor']}/cycles/latest")
        cycle = response.json() if response.status_code == 200 else None
        if cycle is None or cycle["cycle_id"] <= after_cycle:
            return
        self._started_at = dt.datetime.fromisoformat(cycle["started_at"]).timestamp()
        if cycle["status"] == "running":
            return
        finished = cycle.get("finished_at")
        end = dt.datetime.fromisoformat(finished).timestamp() if finished else time.time()
        self._done("ingest", end - self._started_at)
        self.times.cycle = cycle
        self._say(f"{self._day}: ingest done, {cycle['models']:,} models in {self.times.done_at['ingest']:.1f} s")
        if cycle["status"] == "failed":
            raise RuntimeError(f"the ingestion cycle failed: {cycle.get('error')}")

    async def _check_features(self, started_at: float) -> None:
        if await _value(self._conn, _FEATURES_CLOSED, self._day) >= self._models:
            self._done("features", time.time() - started_at)
            self.times.close_after_last_batch_s = float(await self._conn.fetchval(_CLOSE_AFTER_LAST_BATCH, self._day))

    async def _check_score(self, started_at: float) -> None:
        scored = await scored_total(self._client, self._scorer_urls) - self._scored_before
        if scored >= self._models and await _value(self._conn, _SCORES, self._day) >= self._models:
            self._done("score", time.time() - started_at)
            # closes so far, this day's included (read a stage later: the counter follows the close's commit); a day
            # closed before its last snapshots (the idle rule met a pause in the stream) is closed again when they come
            self.times.closes = int(await metric_total(self._client, _of(self._urls, "features"), _CLOSES_METRIC))

    async def _check_catalog(self, started_at: float) -> None:
        if await _value(self._conn, _CATALOG_SWAPPED, self._day) >= self._models:
            self._done("catalog", time.time() - started_at)

    def _check_deadline(self) -> None:
        pending = next(s for s in STAGES if s not in self.times.done_at)
        previous = [self.times.done_at[s] for s in STAGES if s in self.times.done_at]
        since = self._waiting_since if self._started_at is None else self._started_at + max(previous, default=0.0)
        if time.time() - since > self._stage_timeout_s:
            raise StageTimeout(f"stage {pending!r} not done within {self._stage_timeout_s:.0f} s on {self._day}")

    async def run(self, after_cycle: int, poll_s: float) -> DayTimes:
        """Until every stage is done for the first cycle after `after_cycle`."""
        self._scored_before = await scored_total(self._client, self._scorer_urls)
        done = self.times.done_at
        while True:
            if "ingest" not in done:
                await self._check_ingest(after_cycle)
            if self._started_at is not None:
                if "features" not in done:
                    await self._check_features(self._started_at)
                if "features" in done and "score" not in done:
                    await self._check_score(self._started_at)
                if "score" in done and "catalog" not in done:
                    await self._check_catalog(self._started_at)
            if all(s in done for s in STAGES):
                return self.times
            self._check_deadline()
            await asyncio.sleep(poll_s)


async def _track_day(
    urls: dict[str, str],
    scorer_urls: list[str],
    db_url: str,
    day: dt.date,
    models: int,
    after_cycle: int,
    options: Options,
) -> DayTimes:
    conn = await asyncpg.connect(db_url)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            tracker = DayTracker(
                conn, client, urls, scorer_urls, day, models, stage_timeout_s=options.stage_timeout_s, say=options.say
            )
            return await tracker.run(after_cycle, options.poll_s)
    finally:
        await conn.close()


def _stages_s(done_at: dict[str, float]) -> dict[str, float | None]:
    """Each stage's own share: ingest from the start, features and score as tails after the stage before."""
    out: dict[str, float | None] = {}
    previous = 0.0
    for stage in STAGES:
        at = done_at.get(stage)
        out[stage] = None if at is None else max(0.0, at - previous)
        previous = at if at is not None else previous
    return out


def _mb(value: int | None) -> float | None:
    return round(value / 2**20, 1) if value is not None else None


def run(models: int, days: int = 1, options: Options | None = None) -> dict[str, Any]:
    """Run the benchmark and return its report (see module docstring); `ok` is False when a stage failed."""
    from hubpulse_common.synthetic import SyntheticHub

    options = options or Options()
    hub = SyntheticHub(models, days, seed=0)
    day_models = [len(hub.day_columns(d)) for d in range(days)]
    report: dict[str, Any] = {
        "ok": False,
        "models": models,
        "days": days,
        "model_days": sum(day_models),
        "stage_timeout_s": options.stage_timeout_s,
        "scorers": options.scorers,
        "features_replicas": options.features,
        "catch_up": options.catch_up,
        "pg_locale": options.pg_locale,
        "pg_settings": dict(options.pg_settings),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "per_day": [],
    }
    sampler = Sampler()
    sampler.start()
    children: dict[str, Running] = {}
    started = time.perf_counter()
    try:
        # a leftover file in the scratch folder must not cost the report of a run that measured for minutes
        with (
            tempfile.TemporaryDirectory(prefix="hubpulse-bench-", ignore_cleanup_errors=True) as tmp,
            ExitStack() as stack,
        ):
            work, logs = Path(tmp), Path(tmp) / "logs"

            def start(spec: ProcessSpec, timeout_s: float = 120) -> Running:
                child = stack.enter_context(started_child(spec, logs, timeout_s))
                children[spec.name] = child
                postgres = spec.url.rsplit("/", 1)[0] + "/postgres" if spec.name == "postgres" else None
                sampler.watch(spec.name, child.pid, postgres_url=postgres)
                return child

            try:
                _run_days(hub, day_models, report, start, work, started, options)
                report["ok"] = True
                # where each close's time went (read, store and encode, publish), as the features service logs it
                report["features_close_logs"] = [
                    line
                    for log in sorted(logs.glob("features*.log"))
                    for line in _log_lines(log, "features.day_closed")
                ]
                # and each catalog swap's steps (fill, indexes, vacuum, prepare, swap), as its scorer logs them
                report["catalog_swap_logs"] = [
                    line
                    for log in sorted(logs.glob("scorer*.log"))
                    for line in _log_lines(log, "scorer.catalog_swapped")
                ]
            except (StageTimeout, RuntimeError, OSError, asyncpg.PostgresError, httpx.HTTPError) as exc:
                report["error"] = f"{type(exc).__name__}: {exc}"
                options.say(f"[red]failed:[/] {report['error']}")
                report["logs_tail"] = {
                    p.stem: log_tail(p, lines=30, chars=1500, sep="\n") for p in sorted(logs.glob("*.log"))
                }
            except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (the command makes it SystemExit)
                report["error"] = f"interrupted ({type(exc).__name__})"
                options.say(f"[red]{report['error']}:[/] stopping every child")
            finally:
                sampler.stop()  # before the children stop (the stack unwinds after this block)
                report["peak_rss_mb"] = {
                    name: _mb(peak_rss_bytes(c.pid) or sampler.peak.get(name)) for name, c in children.items()
                }
                report["peak_rss_tree_mb"] = {name: _mb(v) for name, v in sampler.peak_tree.items()}
                report["cpu_s"] = {name: round(v, 1) for name, v in sampler.cpu_s.items()}
                # PostgreSQL's share by whom it worked for: each service's connections, autovacuum, the WAL writer...
                report["postgres_cpu_s"] = {kind: round(v, 1) for kind, v in sampler.postgres_cpu_s().items()}
    finally:
        sampler.stop()  # where the children never started
        report["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        report["wall_s"] = time.perf_counter() - started
    over = {n: v for n, v in report.get("peak_rss_mb", {}).items() if n.split("-")[0] in SERVICES and v and v > 2048}
    report["rss_within_2gib"] = not over
    return report


def _of(urls: dict[str, str], service: str) -> list[str]:
    """The URLs of every replica of `service`."""
    return [url for name, url in urls.items() if name.split("-", 1)[0] == service]


def _log_lines(path: Path, event: str) -> list[str]:
    """The lines of a service's log that record `event` (none if the log is missing)."""
    if not path.exists():
        return []
    return [" ".join(line.split())[:600] for line in path.read_text(errors="replace").splitlines() if event in line]


def _run_days(
    hub: SyntheticHub,
    day_models: list[int],
    report: dict[str, Any],
    start: Callable[..., Running],
    work: Path,
    started: float,
    options: Options,
) -> None:
    days, say = len(day_models), options.say
    say("starting PostgreSQL, broker, S3 and the replay Hub")
    # pg_stat_statements: the report says which statements PostgreSQL's CPU time went to
    settings = {"shared_preload_libraries": "pg_stat_statements", **options.pg_settings}
    stores = start_stores(start, work, settings, pg_locale=options.pg_locale)
    hub_proc = start(_hub_spec(report["models"], days, free_port()), timeout_s=600)
    db_url = stores.db_url
    env = {
        **stores.env,
        "HF_ENDPOINT": hub_proc.spec.url,
        "HUBPULSE_INGEST_INTERVAL_S": "86400",
        # the service's default: the ingestor's day-complete signal closes each day, the idle rule is the fallback
        # (a bench that has to wait for it is slower by this much, which shows)
        "HUBPULSE_DAY_CLOSE_IDLE_S": "20",
    }
    urls: dict[str, str] = {}

    def start_consumers() -> list[str]:
        # Replicas share their service's consumer group (as the k8s deployment runs at least two of each): one
        # computes while another waits on PostgreSQL. The first scorer bootstraps the registry's model before the
        # others start and load it.
        for name in (*replicas("features", options.features), *replicas("scorer", options.scorers)):
            say(f"starting {name}")
            urls[name] = start(_service_spec(name, free_port(), env)).spec.url
            wait_ready(urls[name])
        return _of(urls, "scorer")

    if options.catch_up:
        _catch_up(hub, day_models, report, start, env, urls, start_consumers, db_url, options)
        return
    scorer_urls = start_consumers()
    report["setup_s"] = time.perf_counter() - started
    say("starting the ingestor: its first cycle starts at once")
    urls["ingestor"] = start(_service_spec("ingestor", free_port(), env)).spec.url
    last_cycle = 0
    for d in range(days):
        if d > 0:
            httpx.post(f"{hub_proc.spec.url}/_replay/advance", json={"days": 1}, timeout=120).raise_for_status()
            httpx.post(f"{urls['ingestor']}/cycles", timeout=10).raise_for_status()
        day, n = hub.dates[d], day_models[d]
        entry: dict[str, Any] = {"date": day.isoformat(), "models": n}
        report["per_day"].append(entry)
        try:
            times = asyncio.run(_track_day(urls, scorer_urls, db_url, day, n, last_cycle, options))
        except StageTimeout as exc:
            entry["error"] = str(exc)
            raise
        assert times.cycle is not None
        last_cycle = times.cycle["cycle_id"]
        entry["cycle"] = {k: times.cycle[k] for k in ("status", "models", "pages", "retries")}
        entry["done_at_s"] = times.done_at
        entry["stages_s"] = _stages_s(times.done_at)
        entry["end_to_end_s"] = times.done_at["catalog"]
        entry["close_after_last_batch_s"] = times.close_after_last_batch_s
        entry["features_closes"] = times.closes
        say(f"{day}: scored end to end in {entry['end_to_end_s']:.1f} s ({n / entry['end_to_end_s']:,.0f} models/s)")
    report["db_statements"] = asyncio.run(_top_statements(db_url))
    report["wal"] = asyncio.run(_wal_written(db_url))
    copy_s, copied = asyncio.run(_bare_copy_seconds(db_url, hub.dates[days - 1]))
    per_day = report["per_day"]
    pipeline_s = sum(d["end_to_end_s"] for d in per_day)
    report.update(
        {
            "models_per_s": report["model_days"] / pipeline_s,
            "end_to_end_s": pipeline_s,
            "copy_floor": {"rows": copied, "seconds": copy_s, "rows_per_s": copied / copy_s},
            # the last day's pipeline wall time vs one bare COPY of that day's rows
            "ratio_vs_copy": per_day[-1]["end_to_end_s"] / copy_s,
            "stages_s": {s: sum(d["stages_s"][s] or 0.0 for d in per_day) for s in STAGES},
            "stages_ran": ["replay hub", *STAGES],
        }
    )


def _catch_up(
    hub: SyntheticHub,
    day_models: list[int],
    report: dict[str, Any],
    start: Callable[..., Running],
    env: dict[str, str],
    urls: dict[str, str],
    start_consumers: Callable[[], list[str]],
    db_url: str,
    options: Options,
) -> None:
    """Every day ingested with no consumer running, then features and scorers started on the backlog: seconds from
    their start until every day is closed with all its models (features) and until the last day's catalog is
    swapped in (catalog), and how many closes that took (a day closed early is closed again by its late rows)."""
    say = options.say
    say("catch-up: the ingestor alone first")
    urls["ingestor"] = start(_service_spec("ingestor", free_port(), env)).spec.url
    last_cycle = 0
    for d, day in enumerate(hub.dates):
        if d > 0:
            httpx.post(f"{env['HF_ENDPOINT']}/_replay/advance", json={"days": 1}, timeout=120).raise_for_status()
            httpx.post(f"{urls['ingestor']}/cycles", timeout=10).raise_for_status()
        cycle = asyncio.run(_cycle_done(urls["ingestor"], last_cycle, options))
        last_cycle = cycle["cycle_id"]
        report["per_day"].append({"date": day.isoformat(), "models": day_models[d], "cycle": cycle})
        say(f"{day}: ingested, {cycle['models']:,} models")
    began = time.perf_counter()
    scorer_urls = start_consumers()
    report["catch_up"] = asyncio.run(
        _caught_up(_of(urls, "features"), scorer_urls, db_url, hub, day_models, began, options)
    )
    say(f"caught up: {report['catch_up']}")


async def _cycle_done(ingestor: str, after_cycle: int, options: Options) -> dict[str, Any]:
    """The first cycle after `after_cycle`, once it has ended (a failed one raises RuntimeError)."""
    deadline = time.monotonic() + options.stage_timeout_s
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"{ingestor}/cycles/latest")
            cycle = response.json() if response.status_code == 200 else None
            if cycle is not None and cycle["cycle_id"] > after_cycle and cycle["status"] != "running":
                if cycle["status"] == "failed":
                    raise RuntimeError(f"the ingestion cycle failed: {cycle.get('error')}")
                return {k: cycle[k] for k in ("cycle_id", "status", "models", "pages", "retries")}
            await asyncio.sleep(options.poll_s)
    raise StageTimeout(f"an ingestion cycle not done within {options.stage_timeout_s:.0f} s")


async def _caught_up(
    features: list[str],
    scorer_urls: list[str],
    db_url: str,
    hub: SyntheticHub,
    day_models: list[int],
    began: float,
    options: Options,
) -> dict[str, Any]:
    days = list(zip(hub.dates, day_models, strict=True))
    done: dict[str, float] = {}
    deadline = time.monotonic() + options.stage_timeout_s * len(days)
    conn = await asyncpg.connect(db_url)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            while "catalog" not in done:
                if time.monotonic() > deadline:
                    raise StageTimeout(f"the backlog not caught up within {options.stage_timeout_s * len(days):.0f} s")
                if "features" not in done and all([await _value(conn, _FEATURES_CLOSED, day) >= n for day, n in days]):
                    done["features"] = time.perf_counter() - began
                    options.say(f"every day closed at {done['features']:.1f} s")
                last, n = days[-1]
                if "features" in done and await _value(conn, _CATALOG_SWAPPED, last) >= n:
                    done["catalog"] = time.perf_counter() - began
                await asyncio.sleep(options.poll_s)
            closes = await metric_total(client, features, _CLOSES_METRIC)
            scored = await scored_total(client, scorer_urls)
    finally:
        await conn.close()
    return {"features_s": done["features"], "catalog_s": done["catalog"], "closes": int(closes), "scored": int(scored)}


def table(report: dict[str, Any]) -> Any:
    """The report as a rich table (what `hubpulse bench pipeline` prints)."""
    from rich.table import Table

    ok = report.get("ok")
    t = Table(title=f"bench pipeline: {report['models']:,} models x {report['days']} day(s)", show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    if ok and report.get("catch_up"):
        caught = report["catch_up"]
        t.add_row("catch-up: every day closed", f"{caught['features_s']:.1f} s")
        t.add_row("catch-up: last day's catalog swapped", f"{caught['catalog_s']:.1f} s")
        t.add_row("catch-up: closes", f"{caught['closes']} for {report['days']} day(s)")
    elif ok:
        t.add_row("end to end", f"{report['end_to_end_s']:.1f} s")
        t.add_row("models/s", f"{report['models_per_s']:,.0f}")
        floor = report["copy_floor"]
        t.add_row("bare COPY", f"{floor['seconds']:.2f} s ({floor['rows_per_s']:,.0f} rows/s)")
        t.add_row("ratio vs COPY", f"{report['ratio_vs_copy']:.1f}x")
        for stage, seconds in report["stages_s"].items():
            t.add_row(f"stage {stage}", f"{seconds:.1f} s")
    else:
        t.add_row("[red]error[/]", str(report.get("error")))
    for name, mb in report.get("peak_rss_mb", {}).items():
        tree = report.get("peak_rss_tree_mb", {}).get(name)
        cpu = report.get("cpu_s", {}).get(name)
        t.add_row(f"{name}: peak RSS / tree / CPU", f"{mb} MB / {tree} MB / {cpu} s")
    for statement in report.get("db_statements", [])[:5]:
        t.add_row(f"db: {statement['query'][:60]}", f"{statement['seconds']:.1f} s / {statement['calls']} calls")
    t.add_row("load average start -> end", f"{report['loadavg_start']} -> {report.get('loadavg_end')}")
    return t
