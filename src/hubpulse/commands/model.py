"""`hubpulse train` and `hubpulse backtest`: thin wrappers over hubpulse_scorer.model.

The model stack (xgboost, sklearn) is imported inside the commands so that `hubpulse --help` stays fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from hubpulse.commands.options import output_file
from hubpulse_common.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from hubpulse_scorer.model.artifact import TrainedModel
    from hubpulse_scorer.model.training import TrainConfig
    from hubpulse_scorer.registry import ModelRegistry

console = Console(stderr=True)

# Stored histories up to this many model-days are trained on in memory, with a backtest (its peak memory:
# docs/decisions/model.md); larger ones are streamed day by day like the 2M-model scale bench.
IN_MEMORY_ROWS = 5_000_000

HistoryOpt = Annotated[Path, typer.Option("--history", help="history file (CONTRACT format, plain or gzip CSV)")]
LabelOpt = Annotated[str, typer.Option("--label", help="trending (needs trending_rank) or surge")]
HorizonOpt = Annotated[int, typer.Option("--horizon", min=1, help="days ahead the label looks")]
TopKOpt = Annotated[int, typer.Option("--top-k", min=1, help="K of the trending label")]
SeedOpt = Annotated[int, typer.Option("--seed", help="random seed (training is deterministic given it)")]


@contextmanager
def _progress(title: str) -> Iterator[Callable[[str], None]]:
    with console.status(title) as status:
        yield lambda step: status.update(f"{title}: {step}")


def _config(label: str, horizon: int, top_k: int, seed: int) -> TrainConfig:
    from hubpulse_scorer.model.labels import LabelConfig, LabelName
    from hubpulse_scorer.model.training import TrainConfig

    if label not in ("trending", "surge"):
        raise InputError(f"--label must be trending or surge, not {label!r}")
    kind: LabelName = "trending" if label == "trending" else "surge"
    return TrainConfig(labels=LabelConfig(label=kind, horizon=horizon, top_k=top_k), seed=seed)


def backtest(
    history: HistoryOpt,
    label: LabelOpt = "trending",
    horizon: HorizonOpt = 7,
    top_k: TopKOpt = 10,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the CONTRACT JSON report here", callback=output_file)
    ] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="write PR, calibration, importance PNGs here")] = None,
    seed: SeedOpt = 0,
) -> None:
    """Time-split backtest of the trend model against baselines on the same test rows."""
    from hubpulse_common.history import load_history
    from hubpulse_scorer.model.backtest import report_table, run_backtest, write_plots

    config = _config(label, horizon, top_k, seed)
    with _progress("backtest") as step:
        step("loading history")
        data = load_history(history)
        result = run_backtest(data, config, progress=step)
        if plots is not None:
            step("writing plots")
            written = write_plots(result, plots)
    Console().print(report_table(result.report))
    if plots is not None:
        console.print(f"plots: {', '.join(str(p) for p in written)}")
    if json_out is not None:
        json_out.write_text(json.dumps(result.report, indent=2) + "\n")
        console.print(f"report: {json_out}")


def train(
    history: Annotated[
        Path | None, typer.Option("--history", help="history file; default: the platform's stored snapshots")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="where to write the model artifact", callback=output_file)] = Path(
        "model.hpm"
    ),
    label: LabelOpt = "trending",
    horizon: HorizonOpt = 7,
    top_k: TopKOpt = 10,
    seed: SeedOpt = 0,
    registry: Annotated[
        bool, typer.Option("--register/--no-register", help="store the model as a new version in the registry")
    ] = True,
    promote: Annotated[bool, typer.Option("--promote", help="also make it the version the scorer serves")] = False,
    max_rows: Annotated[
        int,
        typer.Option(
            "--max-rows",
            min=1,
            help="stored histories larger than this are streamed day by day (negatives sampled, no backtest)",
        ),
    ] = IN_MEMORY_ROWS,
) -> None:
    """Backtest, then train on the whole history, write the model artifact and register it as a new version.

    The history is a file, or else every snapshot the platform has stored (`hubpulse ingest`, `hubpulse import`).
    """
    from hubpulse_common.history import load_history

    config = _config(label, horizon, top_k, seed)
    report: dict[str, Any] | None
    with _progress("train") as step:
        if history is not None:
            step("loading history")
            model, report = _backtest_and_train(load_history(history), config, step)
        else:
            model, report = _train_on_stored(config, max_rows, step)
    out.write_bytes(model.to_bytes())
    if report is not None:
        m = report["model"]
        console.print(
            f"model {model.metadata.version} -> {out} (backtest PR-AUC {m['pr_auc']:.3f}, "
            f"precision {m['precision']:.3f} / recall {m['recall']:.3f} at {m['threshold']:.3f})"
        )
    else:
        console.print(
            f"model {model.metadata.version} -> {out} (trained on a stream of the stored days, "
            f"{model.metadata.training_window[0]}..{model.metadata.validation_window[1]}; no backtest at this size)"
        )
    if registry:
        _register_trained(model, promote)


def _backtest_and_train(
    history: pd.DataFrame, config: TrainConfig, step: Callable[[str], None]
) -> tuple[TrainedModel, dict[str, Any]]:
    from hubpulse_scorer.model.backtest import run_backtest
    from hubpulse_scorer.model.training import train_from_history

    report = run_backtest(history, config, progress=step).report
    return train_from_history(history, config, backtest=report, progress=step), report


def _train_on_stored(
    config: TrainConfig, max_rows: int, step: Callable[[str], None]
) -> tuple[TrainedModel, dict[str, Any] | None]:
    """Train on the snapshots in PostgreSQL: in memory with a backtest, or streamed when there are too many rows."""
    import pandas as pd

    from hubpulse_common import db
    from hubpulse_common.settings import load_settings
    from hubpulse_ingestor.repository import read_history_day, stored_days
    from hubpulse_ingestor.settings import IngestorSettings
    from hubpulse_scorer.model.training import build_dataset_streaming
    from hubpulse_scorer.model.training import train as fit

    url = load_settings(IngestorSettings).database_url.get_secret_value()
    with asyncio.Runner() as runner:
        step("reading the stored snapshot days")
        pool = runner.run(db.create_pool(url, max_size=1))  # an unreachable database: ConfigError naming the URL
        try:
            days = runner.run(stored_days(pool))
            if not days:
                raise InputError(
                    "no stored snapshots to train on: run `hubpulse ingest` or `hubpulse import FILE` first, "
                    "or pass --history FILE"
                )

            def frames() -> Iterator[pd.DataFrame]:
                for i, (day, models) in enumerate(days, 1):
                    step(f"reading stored day {day} ({i}/{len(days)}, {models:,} models)")
                    yield runner.run(read_history_day(pool, day))

            total = sum(models for _, models in days)
            if total <= max_rows:
                return _backtest_and_train(pd.concat(list(frames()), ignore_index=True), config, step)
            # Too large to hold: the scale path (every positive, negatives sampled and weighted back up).
            data = build_dataset_streaming(
                frames(), config, negative_rate=min(1.0, config.max_negatives / total), progress=step
            )
            return fit(data.frame, data.label, config, weight=data.weight, progress=step), None
        finally:
            runner.run(pool.close())


# ---- the model registry (hubpulse_scorer.registry): `hubpulse models ...` -------------------------

VersionArg = Annotated[str, typer.Argument(help="a registered version (see `hubpulse models list`)")]


def _open_registry() -> ModelRegistry:
    """The registry in the configured S3 bucket (HUBPULSE_S3_* variables, as the scorer reads them)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from hubpulse_common.errors import ConfigError
    from hubpulse_common.s3 import aws_client, ensure_bucket
    from hubpulse_common.settings import CommonSettings, load_settings
    from hubpulse_scorer.registry import ModelRegistry

    settings = load_settings(CommonSettings)
    client = aws_client("s3", settings)
    try:
        ensure_bucket(client, settings.s3_bucket)
    except ClientError as exc:
        raise ConfigError(f"HUBPULSE_S3_BUCKET={settings.s3_bucket}: cannot use the bucket ({exc})") from None
    except BotoCoreError as exc:
        raise ConfigError(f"HUBPULSE_S3_ENDPOINT={settings.s3_endpoint}: cannot reach S3 ({exc})") from None
    return ModelRegistry(client, settings.s3_bucket)


def _register_trained(model: TrainedModel, promote: bool) -> None:
    registry = _open_registry()
    entry = registry.register(model)
    console.print(f"registered version {entry.version}")
    if promote:
        registry.promote(entry.version)
        console.print(f"promoted {entry.version}: the scorer serves it within seconds")
    else:
        console.print(f"serve it with: hubpulse models promote {entry.version}")


def models_list() -> None:
    """Registered model versions, oldest first, with their training window and backtest PR-AUC."""
    from rich.table import Column, Table

    registry = _open_registry()
    current = registry.current()
    # the version is what users copy into `promote`: never wrapped
    table = Table(
        Column("version", no_wrap=True),
        "current",
        "label",
        "training window",
        "data hash",
        "backtest PR-AUC",
        "registered",
    )
    for entry in registry.entries():
        meta = entry.metadata
        pr_auc = (meta.get("backtest") or {}).get("model", {}).get("pr_auc")
        table.add_row(
            entry.version,
            "*" if current is not None and current.version == entry.version else "",
            str(meta["label"].get("label")),
            " .. ".join(meta["training_window"]),
            meta["data_hash"][:12],
            f"{pr_auc:.3f}" if isinstance(pr_auc, float) else "-",
            entry.registered_at,
        )
    Console().print(table)


def models_promote(version: VersionArg) -> None:
    """Serve VERSION: the scorer picks it up without a restart; the previous version is kept for rollback."""
    pointer = _open_registry().promote(version)
    console.print(f"current version: {pointer.version}")


def models_rollback() -> None:
    """Serve the previously promoted version again."""
    pointer = _open_registry().rollback()
    console.print(f"rolled back; current version: {pointer.version}")


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
    app.command("train")(train)
    models = typer.Typer(name="models", help="The model registry: list, promote, roll back.", no_args_is_help=True)
    models.command("list")(models_list)
    models.command("promote")(models_promote)
    models.command("rollback")(models_rollback)
    app.add_typer(models)
