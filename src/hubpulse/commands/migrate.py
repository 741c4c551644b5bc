"""`hubpulse migrate`: apply the services' database migrations, as a step before a rollout."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from hubpulse_auth.settings import AuthSettings
from hubpulse_common.logging import configure_logging
from hubpulse_common.service import migrate_services, migrations_dir
from hubpulse_common.settings import CommonSettings
from hubpulse_features.settings import FeaturesSettings
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_scorer.settings import ScorerSettings

console = Console()


class Service(StrEnum):
    """The services that own PostgreSQL tables, in the order they migrate."""

    auth = "auth"
    ingestor = "ingestor"
    features = "features"
    scorer = "scorer"


_SETTINGS: dict[Service, type[CommonSettings]] = {
    Service.auth: AuthSettings,
    Service.ingestor: IngestorSettings,
    Service.features: FeaturesSettings,
    Service.scorer: ScorerSettings,
}


def migrate(
    services: Annotated[
        list[Service] | None, typer.Argument(help="Services to migrate (default: all of them).", show_default=False)
    ] = None,
) -> None:
    """Apply pending database migrations (HUBPULSE_DATABASE_URL), then exit; services started with
    HUBPULSE_MIGRATE_ON_START=false only check the schema."""
    configure_logging("migrate", "WARNING", "console", "prod")
    chosen = [service for service in Service if service in (services or list(Service))]
    asyncio.run(migrate_services([(_SETTINGS[s], migrations_dir(f"hubpulse_{s.value}")) for s in chosen]))
    console.print(f"migrated: {', '.join(s.value for s in chosen)}")


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
