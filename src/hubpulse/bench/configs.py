"""What the benches take, declared once: each field annotated with a typer option is a flag
of its `hubpulse bench ...` command (commands.options.config_options), with this default and help; the others keep
their default. Light on imports: the CLI reads these at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer


@dataclass(frozen=True)
class SearchBenchConfig:
    models: Annotated[int, typer.Option("--models", min=1, help="models in the seeded catalog")]
    requests: Annotated[int, typer.Option("--requests", min=1, help="requests to send")] = 20_000
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="requests in flight")] = 32
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="gateway worker processes (each has its own cache)")
    ] = 1
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=1, help="stop sending after this long")] = 300.0
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="keep PostgreSQL here; a later run reuses the seeded catalog")
    ] = None
    # Search right after one day's update of every row, written and swapped in as the scorer does (write_batch,
    # then catalog_swap.swap_day). Autovacuum is held off for the run: what search gets is what the swap left.
    after_update: Annotated[
        bool,
        typer.Option(
            "--after-update",
            help="search right after a day's update of every row (written and swapped in as the scorer does)",
        ),
    ] = False
    seed: int = 0
    # Zipf mix: how many distinct queries (default: as many as requests) and the exponent s.
    distinct: int | None = None
    zipf_s: float = 1.0
    # The second run, with the search cache off: at most this many requests (it is the slow one).
    uncached_requests: int | None = None


@dataclass(frozen=True)
class InferenceBenchConfig:
    requests: Annotated[int, typer.Option("--requests", min=1, help="concurrent calls per hop")] = 1000
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="calls in flight")] = 16
    target: Annotated[
        str,
        typer.Option("--deployment-target", help="where the demo model is deployed (local measures all hops)"),
    ] = "local"
    # the batched deployment's settings (the unbatched one has max_batch_size 1)
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", min=2, help="the batched deployment's batch bound")
    ] = 16
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", min=0, help="the batched deployment's wait for a batch to fill")
    ] = 0.0
    sequential_requests: Annotated[int, typer.Option("--sequential", min=1, help="one-at-a-time calls per hop")] = 200
    # the batching goal's figures: the model server alone, unbatched then batched, alternated this many times
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="alternated unbatched/batched runs of the model server alone")
    ] = 5
    warmup: int = 100
    max_seconds: float = 120.0


@dataclass(frozen=True)
class CatalogBenchConfig:
    models: Annotated[int, typer.Option("--models", min=1, help="models in the seeded catalog")] = 200_000
    batch: Annotated[int, typer.Option("--batch", min=1, help="models per write_batch (the scorer's batch)")] = 5000
    seed: int = 0
    data_dir: Path | None = None  # PostgreSQL's data folder (a temporary one when None)


@dataclass(frozen=True)
class ExplainBenchConfig:
    models: Annotated[int, typer.Option("--models", min=1, help="model-days scored by the real scorer")] = 200_000
    requests: Annotated[int, typer.Option("--requests", min=1, help="model details read of each kind")] = 100
    top_n: Annotated[int, typer.Option("--top-n", min=0, help="the scorer's HUBPULSE_EXPLAIN_TOP_N")] = 1000
    timeout_s: float = 900  # for the day to be scored and swapped in


@dataclass(frozen=True)
class WatchesBenchConfig:
    models: Annotated[int, typer.Option("--models", min=2, help="models, one watch each")] = 200
    paced: Annotated[int, typer.Option("--paced", min=1, help="of which crossing one at a time")] = 20
    spacing_ms: Annotated[float, typer.Option("--spacing-ms", min=0, help="between paced scores")] = 250
    timeout_s: Annotated[float, typer.Option("--timeout", min=1, help="seconds to wait for a phase's webhooks")] = 120
