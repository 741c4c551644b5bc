"""The stores a pipeline bench runs its services over: PostgreSQL with a `bench` database, the broker and S3."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hubpulse.platform.stores import (
    BUILTIN_LOCALE,
    ProcessSpec,
    Running,
    create_database,
    free_port,
    kafka_spec,
    postgres_spec,
    s3_spec,
)


@dataclass(frozen=True)
class BenchStores:
    db_url: str  # the `bench` database
    kafka: str
    s3: str

    @property
    def env(self) -> dict[str, str]:
        """What a service started over these stores is given."""
        return {
            "HUBPULSE_DATABASE_URL": self.db_url,
            "HUBPULSE_KAFKA_BOOTSTRAP": self.kafka,
            "HUBPULSE_S3_ENDPOINT": self.s3,
        }


def start_stores(
    start: Callable[[ProcessSpec], Running],
    work: Path,
    pg_settings: Mapping[str, str] | None = None,
    *,
    pg_locale: str = BUILTIN_LOCALE,
) -> BenchStores:
    """Each store through `start` (which keeps it for the run), its data under `work`; `pg_settings`: server
    settings of PostgreSQL, `pg_locale` its cluster's locale (`postgres_spec`)."""
    pg = start(postgres_spec(work, free_port(), pg_settings, locale=pg_locale))
    kafka = start(kafka_spec(free_port()))
    s3 = start(s3_spec(work, free_port()))
    server = pg.spec.url.rsplit("/", 1)[0]
    asyncio.run(create_database(server + "/postgres", "bench"))
    return BenchStores(server + "/bench", kafka.spec.url, s3.spec.url)
