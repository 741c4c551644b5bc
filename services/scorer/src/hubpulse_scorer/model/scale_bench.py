"""Training at Hub scale: `python -m hubpulse_scorer.model.scale_bench --models 2000000 --days 90`.

Streams the synthetic Hub day by day (hubpulse_common.synthetic) through build_dataset_streaming and
trains; prints wall time and peak RSS. The goal is 2M models x 90 days in <= 15 min under 12 GiB.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from hubpulse_common.synthetic import SyntheticHub
from hubpulse_scorer.model.labels import LabelConfig
from hubpulse_scorer.model.training import TrainConfig, build_dataset_streaming, train


def _compact(values: np.ndarray) -> np.ndarray:
    """float32 when every value is exactly representable (counts below 2**24), else float64 unchanged.

    The features and labels read every column as float64, so the values they see are the same; the
    ~27 days the streaming builder holds take ~20% less memory.
    """
    values = np.asarray(values, dtype="float64")
    small = values.astype("float32")
    return small if np.array_equal(small, values, equal_nan=True) else values


def typed_days(hub: SyntheticHub) -> Iterator[pd.DataFrame]:
    """The hub's days in the typed history format, built from its columns (no string parsing)."""
    ids = pd.CategoricalDtype(pd.Index(hub.model_id))
    for d in range(hub.days):
        c = hub.day_columns(d)
        n = len(c)
        yield pd.DataFrame(
            {
                "snapshot_date": np.full(n, np.datetime64(c.date, "ns")),
                "model_id": pd.Categorical.from_codes(c.model_index, dtype=ids),
                "downloads": _compact(c.downloads),
                "downloads_all_time": _compact(np.where(c.downloads_all_time < 0, np.nan, c.downloads_all_time)),
                "likes": _compact(c.likes),
                "pipeline_tag": pd.Categorical.from_codes(c.pipeline_code, categories=pd.Index(c.pipeline_vocab)),
                "library_name": pd.Categorical.from_codes(c.library_code, categories=pd.Index(c.library_vocab)),
                "created_at": pd.to_datetime(c.created_ts, unit="s"),
                "trending_rank": _compact(np.where(c.trending_rank > 0, c.trending_rank, np.nan)),
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--label", choices=["trending", "surge"], default="trending")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--negatives", type=int, default=2_000_000)
    parser.add_argument("--chunk-days", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    hub = SyntheticHub(args.models, args.days, seed=0)
    config = TrainConfig(labels=LabelConfig(label=args.label, top_k=args.top_k), chunk_days=args.chunk_days)
    rate = min(1.0, args.negatives / (args.models * args.days))

    def progress(step: str) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{time.perf_counter() - started:7.1f}s peak {rss:5.2f} GiB  {step}", flush=True)

    data = build_dataset_streaming(typed_days(hub), config, negative_rate=rate, progress=progress)
    progress(f"dataset: {len(data.label):,} rows, {int(data.label.sum()):,} positives")
    model = train(data.frame, data.label, config, weight=data.weight, progress=progress)
    progress(f"trained {model.metadata.version}, threshold {model.threshold:.3f}")


if __name__ == "__main__":
    main()
