"""Session fixtures: the real embedded stores and broker, started once and reached over sockets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubpulse.platform.stores import (
    ProcessSpec,
    Running,
    StartFailed,
    create_database,
    free_port,
    kafka_spec,
    mongo_spec,
    postgres_spec,
    s3_spec,
    start,
    terminate,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The session's gateway process over its seeded catalog, one for every area that uses it (gateway, web): a fixture
# imported into each area's conftest would be a fixture of each, seeded and started once per area.
pytest_plugins = ["gateway.gateway_process"]


Store = Running  # a session store process, as the test areas name it


def _start(spec: ProcessSpec, logs: Path, timeout_s: float = 60) -> Store:
    try:
        return start(spec, logs, timeout_s)
    except StartFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stores")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def postgres(store_dir: Path) -> Iterator[Store]:
    store = _start(postgres_spec(store_dir, free_port()), store_dir / "logs")
    admin = store.url.rsplit("/", 1)[0] + "/postgres"

    async def ready() -> None:
        for _ in range(100):
            try:
                await create_database(admin, "hubpulse")
                return
            except (OSError, Exception):
                await asyncio.sleep(0.1)
        raise RuntimeError("postgres never accepted connections")

    asyncio.run(ready())
    yield store
    terminate(store.proc, "postgres")


@pytest.fixture(scope="session")
def kafka(store_dir: Path) -> Iterator[Store]:
    store = _start(kafka_spec(free_port()), store_dir / "logs")
    yield store
    terminate(store.proc, "kafka")


@pytest.fixture(scope="session")
def metrics_kafka(store_dir: Path) -> Iterator[Store]:
    """A second session broker for stacks that run the metrics service: its consumer groups are new, and on the
    session broker they would first read every score and feature row the whole session published."""
    store = _start(kafka_spec(free_port()), store_dir / "logs-metrics-kafka")
    yield store
    terminate(store.proc, "kafka")


@pytest.fixture(scope="module")
def module_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A broker of the module's own, for a stack whose consumers read from the start and whose test waits seconds
    for its own events to show: on `metrics_kafka` a new metrics service first reads every inference event the
    metrics tests published (3,000 from the kill -9 test alone)."""
    store = _start(kafka_spec(free_port()), tmp_path_factory.mktemp("module-kafka"))
    yield store
    terminate(store.proc, "kafka")


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[Store]:
    """A broker of the test's own, for a test whose services must not read the session's earlier messages (a
    new consumer group reads a topic from its start: the whole session's backlog, before the test's own)."""
    store = _start(kafka_spec(free_port()), tmp_path / "logs")
    yield store
    terminate(store.proc, "kafka")


@pytest.fixture(scope="session")
def mongo(store_dir: Path) -> Iterator[Store]:
    store = _start(mongo_spec(store_dir, free_port()), store_dir / "logs")
    yield store
    terminate(store.proc, "mongo")


@pytest.fixture(scope="session")
def s3(store_dir: Path) -> Iterator[Store]:
    store = _start(s3_spec(store_dir, free_port()), store_dir / "logs")
    yield store
    terminate(store.proc, "s3")


async def fresh_database(postgres: Store, name: str, options: str = "") -> str:
    """A database of its own for a test module, so tests do not see each other's rows; `options`: CREATE DATABASE's
    (a template, a locale)."""
    admin = postgres.url.rsplit("/", 1)[0] + "/postgres"
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" {options}')
    finally:
        await conn.close()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
async def database_url(postgres: Store, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database per test (named after the test)."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return await fresh_database(postgres, name)


@pytest.fixture
def service_env(
    monkeypatch: pytest.MonkeyPatch, kafka: Store, postgres: Store, mongo: Store, s3: Store
) -> dict[str, str]:
    """HUBPULSE_* variables pointing a service at the test stores."""
    env = {
        "HUBPULSE_KAFKA_BOOTSTRAP": kafka.url,
        "HUBPULSE_DATABASE_URL": postgres.url,
        "HUBPULSE_MONGO_URL": mongo.url,
        "HUBPULSE_S3_ENDPOINT": s3.url,
        "HUBPULSE_ENVIRONMENT": "test",
        "HUBPULSE_LOG_FORMAT": "console",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def shared_data_file(name: str) -> Path:
    """A file of ../shared/data, or skip: that folder is not part of a clone."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real Hub history lives beside the repo, never in it)")
    return path


os.environ.setdefault("HUBPULSE_LOG_FORMAT", "console")
# Kafka's floor (support/consumers.py); the services' default stays 10 s
os.environ.setdefault("HUBPULSE_CONSUMER_SESSION_TIMEOUT_MS", "6000")
