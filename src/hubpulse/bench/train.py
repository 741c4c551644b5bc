"""`hubpulse bench train`: the trend model's training at Hub scale, on the synthetic Hub.

Streams the synthetic Hub day by day (`hubpulse_common.synthetic.typed_days`) through the scorer's
`build_dataset_streaming` and trains; says the wall time and peak RSS at each step and returns them as a report.
The goal and its measurements: docs/decisions/model.md ("Scale").
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubpulse_scorer.model.labels import LabelName

Say = Callable[[str], None]


def run(
    models: int,
    days: int,
    *,
    label: LabelName = "trending",
    top_k: int = 100,
    negatives: int = 2_000_000,
    chunk_days: int = 7,
    say: Say = print,
) -> dict[str, Any]:
    from hubpulse_common.synthetic import SyntheticHub, typed_days
    from hubpulse_scorer.model.labels import LabelConfig
    from hubpulse_scorer.model.training import TrainConfig, build_dataset_streaming, train

    started = time.perf_counter()
    hub = SyntheticHub(models, days, seed=0)
    config = TrainConfig(labels=LabelConfig(label=label, top_k=top_k), chunk_days=chunk_days)
    rate = min(1.0, negatives / (models * days))

    def peak_gib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def progress(step: str) -> None:
        say(f"{time.perf_counter() - started:7.1f}s peak {peak_gib():5.2f} GiB  {step}")

    data = build_dataset_streaming(typed_days(hub), config, negative_rate=rate, progress=progress)
    progress(f"dataset: {len(data.label):,} rows, {int(data.label.sum()):,} positives")
    model = train(data.frame, data.label, config, weight=data.weight, progress=progress)
    progress(f"trained {model.metadata.version}, threshold {model.threshold:.3f}")
    return {
        "models": models,
        "days": days,
        "label": label,
        "rows": len(data.label),
        "positives": int(data.label.sum()),
        "version": model.metadata.version,
        "threshold": model.threshold,
        "wall_s": time.perf_counter() - started,
        "peak_rss_gib": peak_gib(),
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
