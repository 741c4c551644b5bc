"""`hubpulse ingest` and `hubpulse import`: the ingestor's code in this process, with a progress bar.

Settings come from the same `HUBPULSE_*` variables (and `HF_ENDPOINT`) as the ingestor service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hubpulse_common.errors import UserFacingError

console = Console(stderr=True)


def _progress(total: int | None) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if total is not None else TextColumn("{task.completed:,.0f} models"),
        TimeElapsedColumn(),
        console=console,
    )


def ingest(
    once: Annotated[bool, typer.Option("--once", help="run one cycle and exit (else: cycles every interval)")] = False,
) -> None:
    """Walk the Hub at HF_ENDPOINT: snapshot rows into PostgreSQL, hub.snapshots.v2 events into Kafka."""
    from hubpulse_common.settings import load_settings
    from hubpulse_ingestor.cycle import run_cycle
    from hubpulse_ingestor.scheduler import run_scheduler
    from hubpulse_ingestor.settings import IngestorSettings
    from hubpulse_ingestor.standalone import open_stores

    settings = load_settings(IngestorSettings)

    async def main() -> None:
        async with open_stores(settings) as (pool, bus):
            if not once:
                await run_scheduler(pool, bus, settings)
                return
            with _progress(None) as progress:
                task = progress.add_task(f"ingesting {settings.hf_endpoint}", total=None)
                result = await run_cycle(
                    pool, bus, settings, on_progress=lambda models, _: progress.update(task, completed=models)
                )
            skipped = ", ".join(f"{n:,} {reason}" for reason, n in sorted(result.skipped.items())) or "none"
            estimate = (
                f"; a full walk takes {result.walk_estimate_s / 60:.0f} min at the Hub's quota"
                if (result.walk_estimate_s is not None)
                else ""
            )
            console.print(
                f"cycle {result.cycle_id} {result.status}: {result.listed:,} listed, {result.models:,} stored on "
                f"{result.snapshot_date}, skipped {skipped}, {result.renamed} renamed, "
                f"{result.pages:,} pages, {result.retries} retries, {len(result.failed_pages)} failed pages, "
                f"{result.seconds:.1f} s{' (resumed)' if result.resumed else ''}{estimate}"
            )
            if result.status == "interrupted":
                raise UserFacingError(
                    f"ingestion cycle {result.cycle_id} stopped at a page that kept failing "
                    f"({result.failed_pages[-1]['error']}); the next run resumes from it"
                )

    asyncio.run(main())


def import_file(
    file: Annotated[Path, typer.Argument(help="history file (CONTRACT format, plain or gzip CSV)")],
) -> None:
    """Load a history file through the pipeline, day by day (rows and hub.snapshots.v2 events, source=import)."""
    from hubpulse_common.history import load_history
    from hubpulse_common.settings import load_settings
    from hubpulse_ingestor.importer import import_history
    from hubpulse_ingestor.settings import IngestorSettings
    from hubpulse_ingestor.standalone import open_stores

    settings = load_settings(IngestorSettings)
    with console.status(f"reading {file}"):
        history = load_history(file)
    days = history["snapshot_date"].nunique()

    async def main() -> int:
        async with open_stores(settings) as (pool, bus):
            with _progress(len(history)) as progress:
                task = progress.add_task(f"importing {file.name} ({days} days)", total=len(history))
                written: int = await import_history(
                    pool,
                    bus,
                    history,
                    settings.batch_models,
                    lambda n: progress.advance(task, n),
                    publish_v1=settings.snapshots_publish_v1,
                )
                return written

    written = asyncio.run(main())
    console.print(f"imported {written:,} model-days over {days} days from {file}")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("import")(import_file)
