"""`hubpulse bench ...`: benchmarks (implementations in hubpulse.bench)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hubpulse.bench.configs import (
    CatalogBenchConfig,
    ExplainBenchConfig,
    InferenceBenchConfig,
    SearchBenchConfig,
    WatchesBenchConfig,
)
from hubpulse.commands.options import config_options, output_file
from hubpulse_common.errors import UserFacingError

console = Console(stderr=True)


def _say(line: str) -> None:
    console.print(f"[dim]bench:[/] {line}")


def _emit(report: dict[str, Any], json_out: Path | None) -> None:
    """The report as JSON on stdout, and in `json_out` too when given (also for a failed run)."""
    text = json.dumps(report, indent=2, default=str)
    if json_out is not None:
        json_out.write_text(text + "\n")
    typer.echo(text)


bench_app = typer.Typer(help="Benchmarks of the pipeline and the search API.", no_args_is_help=True)

Report = dict[str, Any]
JsonOut = Annotated[Path | None, typer.Option("--json", help="write the report here", callback=output_file)]


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the stores and services started for the run are stopped (with their groups)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def bench_command(name: str, config: type[Any]) -> Callable[[Callable[[Any], Report]], Callable[[Any], Report]]:
    """`hubpulse bench NAME`: the flags are the config's fields (`config_options`) and `--json`; the bench takes the
    config and returns its report, which goes to stdout (and to the --json file); a report with `ok` false exits 1."""

    def register(bench: Callable[[Any], Report]) -> Callable[[Any], Report]:
        def command(config: Any, json_out: JsonOut = None) -> None:
            _stop_on_sigterm()
            report = bench(config)
            _emit(report, json_out)
            if report.get("ok") is False:
                raise typer.Exit(1)

        command.__name__, command.__doc__ = bench.__name__, bench.__doc__  # typer's help: the bench's docstring
        bench_app.command(name)(config_options(config)(command))
        return bench

    return register


@bench_app.command("pipeline")
def pipeline(
    models: Annotated[int, typer.Option("--models", min=1, help="models on the synthetic Hub")],
    days: Annotated[int, typer.Option("--days", min=1, help="days to ingest and score")] = 1,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the report here (also on failure)", callback=output_file)
    ] = None,
    stage_timeout: Annotated[
        float, typer.Option("--stage-timeout", min=1, help="seconds a stage may take after the one before it")
    ] = 600,
    scorers: Annotated[int, typer.Option("--scorers", min=1, help="scorer replicas (one consumer group)")] = 2,
    features: Annotated[int, typer.Option("--features", min=1, help="features replicas (one consumer group)")] = 1,
    catch_up: Annotated[
        bool,
        typer.Option(
            "--catch-up", help="ingest every day first, then start features and scorers on the backlog (a backfill)"
        ),
    ] = False,
    pg_locale: Annotated[
        str,
        typer.Option(
            "--pg-locale",
            callback=installed_locale,
            help="PostgreSQL's default collation at initdb: builtin (C.UTF-8, as compose sets it) or a libc locale, "
            "e.g. en_US.UTF-8, the postgres image's default",
        ),
    ] = "builtin",
    pg_setting: Annotated[
        list[str] | None,
        typer.Option(
            "--pg-setting",
            callback=server_settings,
            help="NAME=VALUE, a PostgreSQL server setting over the embedded one's (repeatable), e.g. "
            "shared_buffers=256MB as docker-compose.yml runs it",
        ),
    ] = None,
) -> None:
    """Synthetic Hub -> ingestor -> features -> scorer over the real broker and PostgreSQL, vs one bare COPY."""
    from hubpulse.bench.pipeline import Options, run, table
    from hubpulse_common.synthetic import MAX_MODELS

    if models > MAX_MODELS:
        raise UserFacingError(f"--models must be at most {MAX_MODELS}, got {models}")
    _stop_on_sigterm()
    options = Options(
        scorers=scorers,
        stage_timeout_s=stage_timeout,
        say=_say,
        catch_up=catch_up,
        features=features,
        pg_locale=pg_locale,
        pg_settings=dict(setting.split("=", 1) for setting in pg_setting or []),
    )
    report = run(models, days, options)
    console.print(table(report))
    _emit(report, json_out)
    if not report["ok"]:
        raise typer.Exit(1)


def server_settings(values: list[str] | None) -> list[str] | None:
    """NAME=VALUE each (PostgreSQL itself names an unknown setting, in the report's failure)."""
    for value in values or []:
        name, _, setting = value.partition("=")
        if not name.strip() or not setting.strip() or not name.replace("_", "").replace(".", "").isalnum():
            raise typer.BadParameter(f"{value!r} is not NAME=VALUE (a PostgreSQL setting, e.g. shared_buffers=256MB)")
    return values


def installed_locale(name: str) -> str:
    """`builtin`, or a libc locale this machine has (initdb refuses any other, with a traceback of its own)."""
    import locale

    from hubpulse.platform.stores import BUILTIN_LOCALE

    if name == BUILTIN_LOCALE:
        return name
    saved = locale.setlocale(locale.LC_COLLATE)
    try:
        locale.setlocale(locale.LC_COLLATE, name)
    except locale.Error:
        raise typer.BadParameter(
            f"{name!r} is not a locale of this machine (`locale -a` lists them; on Debian: "
            "`localedef -i en_US -f UTF-8 en_US.UTF-8`)"
        ) from None
    finally:
        locale.setlocale(locale.LC_COLLATE, saved)
    return name


@bench_command("search", SearchBenchConfig)
def search(config: SearchBenchConfig) -> Report:
    """Search through the real gateway over a seeded catalog: text + filters; p50/p95/p99 latency and req/s."""
    from hubpulse.bench.search import run_search_bench

    return run_search_bench(config)


@bench_command("catalog", CatalogBenchConfig)
def catalog(config: CatalogBenchConfig) -> Report:
    """One day's update of every catalog row through the scorer's write_batch: seconds, sizes, HOT updates."""
    from hubpulse.bench.catalog_write import run_catalog_bench

    return run_catalog_bench(config)


@bench_command("explain", ExplainBenchConfig)
def explain(config: ExplainBenchConfig) -> Report:
    """Model detail latency with explanations on demand: explained before, first read (computed), second read."""
    from hubpulse.bench.explain import run_explain_bench

    return run_explain_bench(config)


@bench_command("inference", InferenceBenchConfig)
def inference(config: InferenceBenchConfig) -> Report:
    """A predict call through the model server, the deployer and the gateway; batched and unbatched."""
    from hubpulse.bench.inference import run_inference_bench, table

    if config.target != "local":
        raise UserFacingError(f"--deployment-target: only local runs offline here, got {config.target!r}")
    report = run_inference_bench(config, say=_say)
    console.print(table(report))
    return report


@bench_command("watches", WatchesBenchConfig)
def watches(config: WatchesBenchConfig) -> Report:
    """Score event -> watch alert -> signed webhook: p50/p95/p99 lag, paced and in a burst (real broker, MongoDB)."""
    from hubpulse.bench.watches import run

    if config.paced >= config.models:
        raise UserFacingError(f"--paced must be below --models ({config.models}), got {config.paced}")
    return run(config, say=_say)


class LabelOption(StrEnum):
    TRENDING = "trending"
    SURGE = "surge"


@bench_app.command("train")
def train(
    models: Annotated[int, typer.Option("--models", min=1, help="models on the synthetic Hub")] = 2_000_000,
    days: Annotated[int, typer.Option("--days", min=2, help="days of history")] = 90,
    label: Annotated[LabelOption, typer.Option("--label", help="what the model predicts")] = LabelOption.TRENDING,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="the label's top K")] = 100,
    negatives: Annotated[int, typer.Option("--negatives", min=1, help="negative rows kept (subsampled)")] = 2_000_000,
    chunk_days: Annotated[int, typer.Option("--chunk-days", min=1, help="target days a chunk")] = 7,
    json_out: JsonOut = None,
) -> None:
    """Trend-model training at Hub scale on the synthetic Hub: wall time and peak RSS per step."""
    from hubpulse.bench.train import run
    from hubpulse_common.synthetic import MAX_MODELS

    if models > MAX_MODELS:
        raise UserFacingError(f"--models must be at most {MAX_MODELS}, got {models}")
    report = run(
        models,
        days,
        label="surge" if label is LabelOption.SURGE else "trending",
        top_k=top_k,
        negatives=negatives,
        chunk_days=chunk_days,
        say=_say,
    )
    _emit(report, json_out)


@bench_app.command("ratelimit")
def ratelimit(
    checks: Annotated[int, typer.Option("--checks", min=10, help="rate-limit checks to time")] = 2000,
    clients: Annotated[int, typer.Option("--clients", min=1, help="distinct keys (callers), in turn")] = 50,
    mongo_url: Annotated[str | None, typer.Option("--mongo-url", help="MongoDB to use (default: SecantusDB)")] = None,
    json_out: JsonOut = None,
) -> None:
    """Latency a rate-limit check adds with the counters in MongoDB (shared by replicas) vs in memory."""
    from hubpulse.bench.ratelimit import run

    report = run(checks, clients, mongo_url, say=_say)
    _emit(report, json_out)
    if not report["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
