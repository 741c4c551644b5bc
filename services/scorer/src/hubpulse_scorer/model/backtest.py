"""The CONTRACT backtest: time split with a horizon-long gap, the model against baselines on the same rows.

cutoff = the first test day; the newest `test_fraction` of labelled rows (whole days) are the test period.
Train rows are dated before cutoff - H (their labels end before the test period starts); test rows on or
after cutoff. The model's calibration and threshold come from the training rows only (training.train).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table
from sklearn.metrics import average_precision_score, brier_score_loss

from hubpulse_common.errors import InputError
from hubpulse_common.history import has_trending_ranks
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.model.labels import make_labels
from hubpulse_scorer.model.training import Progress, TrainConfig, _quiet, build_dataset, train

# baseline name -> (feature column, sign): score = sign * feature; missing values score lowest.
BASELINES: dict[str, tuple[str, float]] = {
    "likes_7d": ("likes_7d", 1.0),
    "lag_1_growth": ("lag_1_growth", 1.0),
    "rolling_mean_7": ("rolling_mean_7", 1.0),
    "current_rank": ("trending_rank", -1.0),
}


@dataclass
class BacktestResult:
    report: dict[str, Any]  # exactly the CONTRACT JSON
    labels: np.ndarray  # test rows
    scores: dict[str, np.ndarray]  # "model" and each baseline, on the test rows
    model: TrainedModel


def precision_at_k(days: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """Mean over days of the precision of that day's k highest-scored rows (fewer if the day is smaller)."""
    frame = pd.DataFrame({"day": days, "y": labels, "s": scores})
    top = frame.sort_values(["day", "s"], ascending=[True, False], kind="stable").groupby("day").head(k)
    return float(top.groupby("day")["y"].mean().mean())


def _baseline_score(test: pd.DataFrame, column: str, sign: float) -> np.ndarray:
    values = sign * test[column].to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isnan(values), -np.inf, values)


def _ranking_metrics(days: np.ndarray, y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    # average_precision_score needs finite scores; -inf (missing) goes just below the smallest one.
    finite = np.isfinite(s)
    floor = (s[finite].min() - 1.0) if finite.any() else 0.0
    s = np.where(finite, s, floor)
    return {"pr_auc": float(average_precision_score(y, s)), "precision_at_10": precision_at_k(days, y, s)}


def split_days(
    history: pd.DataFrame, horizon: int, test_fraction: float, labelled_rows: np.ndarray | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(train_end_exclusive, cutoff): train rows < cutoff - H, test rows >= cutoff.

    The test period is the newest `test_fraction` of labelled *rows* (cut at a day boundary), not of days:
    on a history that thins out (an organisation that went quiet: one row a day for a year) a share of
    days would leave the test period almost empty. `labelled_rows` (bool per history row) marks the rows
    whose label is defined; without it, every row of a day whose horizon ends inside the history counts.
    """
    dates = history["snapshot_date"].to_numpy(dtype="datetime64[ns]")
    days, per_day = np.unique(dates, return_counts=True)
    if labelled_rows is not None:
        per_day = np.bincount(np.searchsorted(days, dates[labelled_rows]), minlength=len(days))
    labelled_mask = (days + np.timedelta64(horizon, "D") <= days[-1]) if len(days) else np.zeros(0, bool)
    labelled_mask &= per_day > 0
    labelled, counts = days[labelled_mask], per_day[labelled_mask]
    min_days = 2 * horizon + 4
    if len(labelled) < 4:
        raise InputError(
            f"history too short for a backtest: {len(days)} days, {len(labelled)} with a {horizon}-day label "
            f"(a {horizon}-day horizon needs at least {min_days} days: training, validation and test days "
            "each separated by the horizon so that no label leaks; try a shorter --horizon)"
        )
    # first day at which the newest rows reach test_fraction of all labelled rows
    newest = np.cumsum(counts[::-1])[::-1]  # labelled rows on or after each day
    cut = (
        int(np.flatnonzero(newest <= test_fraction * newest[0])[0])
        if (newest <= test_fraction * newest[0]).any()
        else len(labelled) - 1
    )
    cut = min(max(cut, 1), len(labelled) - 1)
    cutoff = pd.Timestamp(labelled[cut])
    train_end = cutoff - pd.Timedelta(days=horizon)
    if not (days < np.datetime64(train_end, "ns")).any():
        raise InputError(
            f"history too short for a backtest: {len(days)} days; no training day before {train_end.date()} "
            f"(cutoff {cutoff.date()} minus the {horizon}-day horizon). A {horizon}-day horizon needs at least "
            f"{min_days} days (training, validation and test separated by the horizon); try a shorter --horizon"
        )
    return train_end, cutoff


def run_backtest(
    history: pd.DataFrame, config: TrainConfig, *, test_fraction: float = 0.3, progress: Progress = _quiet
) -> BacktestResult:
    lc = config.labels
    with_ranks = has_trending_ranks(history)
    if lc.label == "trending" and not with_ranks:
        raise InputError("the trending label needs trending_rank values; this history has none (use --label surge)")
    labels_defined = ~np.isnan(make_labels(history, lc))
    train_end, cutoff = split_days(history, lc.horizon, test_fraction, labels_defined)
    data = build_dataset(history, config, subsample_before=train_end, progress=progress)
    dates = data.frame["snapshot_date"]
    is_train = (dates < train_end).to_numpy()
    is_test = (dates >= cutoff).to_numpy()
    y = data.label[is_test]
    if y.sum() == 0:
        raise InputError(
            f"no positives in the test period {cutoff.date()}..{dates.max().date()} ({int(is_test.sum()):,} "
            f"labelled rows, the newest {test_fraction:.0%}): the {lc.label} label cannot be scored on this history"
        )
    model = train(
        data.frame.loc[is_train], data.label[is_train], config, weight=data.weight[is_train], progress=progress
    )
    progress("scoring the test period")
    test = data.frame.loc[is_test]
    days = test["snapshot_date"].to_numpy()
    proba = model.predict_proba(test)
    predicted = proba >= model.threshold
    tp = float((predicted & (y == 1)).sum())
    metrics = {
        **_ranking_metrics(days, y, proba),
        "precision": tp / max(float(predicted.sum()), 1.0),
        "recall": tp / float(y.sum()),
        "accuracy": float((predicted == (y == 1)).mean()),
        "brier": float(brier_score_loss(y, proba)),
        "threshold": model.threshold,
    }
    scores = {"model": proba}
    baselines: dict[str, dict[str, float]] = {}
    for name, (column, sign) in BASELINES.items():
        if name == "current_rank" and not with_ranks:
            continue
        scores[name] = _baseline_score(test, column, sign)
        baselines[name] = _ranking_metrics(days, y, scores[name])
    train_dates = dates[is_train]
    report = {
        "label": lc.label,
        "horizon": lc.horizon,
        "top_k": lc.top_k,
        "train_days": [str(train_dates.min().date()), str(train_dates.max().date())],
        "test_days": [str(pd.Timestamp(days.min()).date()), str(pd.Timestamp(days.max()).date())],
        "test_rows": len(y),
        "positives": int(y.sum()),
        "model": metrics,
        "baselines": baselines,
    }
    model.metadata.extra["backtest_split"] = {
        "train_end_exclusive": str(train_end.date()),
        "cutoff": str(cutoff.date()),
    }
    return BacktestResult(report=report, labels=y, scores=scores, model=model)


def report_table(report: dict[str, Any]) -> Table:
    """The report as a rich table: one row per scorer, the model first."""
    table = Table(
        title=f"backtest {report['label']} H={report['horizon']} K={report['top_k']}: "
        f"test {report['test_days'][0]}..{report['test_days'][1]}, "
        f"{report['test_rows']:,} rows, {report['positives']:,} positives"
    )
    for column in ("scorer", "PR-AUC", "precision@10", "precision", "recall", "brier"):
        table.add_column(column, justify="left" if column == "scorer" else "right")
    m = report["model"]
    table.add_row(
        f"model (threshold {m['threshold']:.3f})",
        f"{m['pr_auc']:.3f}",
        f"{m['precision_at_10']:.3f}",
        f"{m['precision']:.3f}",
        f"{m['recall']:.3f}",
        f"{m['brier']:.4f}",
    )
    for name, b in report["baselines"].items():
        table.add_row(f"baseline {name}", f"{b['pr_auc']:.3f}", f"{b['precision_at_10']:.3f}", "", "", "")
    return table


def write_plots(result: BacktestResult, directory: Path) -> list[Path]:
    """PR curves (model and baselines), the calibration curve and feature importance, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    directory.mkdir(parents=True, exist_ok=True)
    y, label = result.labels, result.report["label"]
    paths = [directory / "pr_curve.png", directory / "calibration.png", directory / "feature_importance.png"]

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in result.scores.items():
        s = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) - 1 if np.isfinite(s).any() else 0)
        p, r, _ = precision_recall_curve(y, s)
        ax.plot(r, p, label=name, linewidth=2 if name == "model" else 1)
    m = result.report["model"]
    ax.plot(
        m["recall"],
        m["precision"],
        "o",
        color="black",
        label=f"threshold {m['threshold']:.3f}: P {m['precision']:.2f} / R {m['recall']:.2f}",
    )
    ax.set(xlabel="recall", ylabel="precision", title=f"precision-recall, {label}")
    ax.legend()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    # Bins holding equal shares of the expected positives (the sum of probabilities), and axes cut to the
    # range the scores use: with a base rate of 1-3%, equal-width or equal-count bins put nearly every bin
    # near 0 and one bin over the whole top of the range, where the predictions that matter are.
    proba = result.scores["model"]
    order = np.sort(proba)
    cum = np.cumsum(order)
    edges = np.unique(order[np.searchsorted(cum, cum[-1] * np.arange(1, 12) / 12)[:-1].clip(0, len(order) - 1)])
    bins = np.digitize(proba, edges)
    rows = np.bincount(bins)
    used = rows > 0
    mean = np.bincount(bins, weights=proba)[used] / rows[used]
    frac = np.bincount(bins, weights=y)[used] / rows[used]
    lim = float(max(frac.max(), mean.max(), 1e-3)) * 1.1
    ax.plot(mean, frac, marker="o", label="model (bins of equal expected positives)")
    ax.plot([0, lim], [0, lim], linestyle="--", color="grey", label="perfect")
    ax.set(
        xlabel="predicted probability",
        ylabel="observed frequency",
        title=f"calibration, {label} (Brier {m['brier']:.4f})",
        xlim=(0, lim),
        ylim=(0, lim),
    )
    ax.legend()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)

    gain = result.model.booster.get_score(importance_type="total_gain")
    top = sorted(gain.items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set(xlabel="total gain", title=f"feature importance, {label}")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths
