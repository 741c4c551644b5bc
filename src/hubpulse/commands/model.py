"""`hubpulse train` and `hubpulse backtest`: thin wrappers over hubpulse_scorer.model.

The model stack (xgboost, sklearn) is imported inside the commands so that `hubpulse --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from hubpulse_common.errors import InputError

if TYPE_CHECKING:
    from hubpulse_scorer.model.training import TrainConfig

console = Console(stderr=True)

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
    json_out: Annotated[Path | None, typer.Option("--json", help="write the CONTRACT JSON report here")] = None,
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
    history: Annotated[Path | None, typer.Option("--history", help="history file; default: synthetic demo")] = None,
    out: Annotated[Path, typer.Option("--out", help="where to write the model artifact")] = Path("model.hpm"),
    label: LabelOpt = "trending",
    horizon: HorizonOpt = 7,
    top_k: TopKOpt = 10,
    seed: SeedOpt = 0,
) -> None:
    """Backtest, then train on the whole history and write the model artifact (metrics included)."""
    from hubpulse_common.history import load_history
    from hubpulse_scorer.model.backtest import run_backtest
    from hubpulse_scorer.model.training import train_from_history

    if history is None:
        raise InputError("--history is required until the synthetic Hub generator is available")
    config = _config(label, horizon, top_k, seed)
    with _progress("train") as step:
        step("loading history")
        data = load_history(history)
        report = run_backtest(data, config, progress=step).report
        model = train_from_history(data, config, backtest=report, progress=step)
    out.write_bytes(model.to_bytes())
    m = report["model"]
    console.print(
        f"model {model.metadata.version} -> {out} (backtest PR-AUC {m['pr_auc']:.3f}, "
        f"precision {m['precision']:.3f} / recall {m['recall']:.3f} at {m['threshold']:.3f})"
    )


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
    app.command("train")(train)
