"""In-process rows/s of each CPU stage of the features and scorer handlers (no broker, no database).

`python -m hubpulse.bench.stages --models 50000` builds a synthetic Hub of that many models over
HISTORY_WINDOW_DAYS days, takes its last day as one consumed batch (hub.snapshots.v2 JSON as the broker would
deliver it) and times what each handler does with a batch besides I/O: decoding, feature computation,
COPY records, event encoding; then the scorer's decoding, scoring + the picks' explanations, rows and events.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import typer

from hubpulse_common.events import (
    ModelFeaturesPacked,
    ModelScoresBatch,
    ModelSnapshot,
    ModelSnapshotBatch,
)
from hubpulse_common.features import HISTORY_WINDOW_DAYS
from hubpulse_common.settings import CommonSettings
from hubpulse_common.synthetic import SyntheticHub

T = TypeVar("T")
# the features close slices its messages by partition of the topic, as many as a service creates
_PARTITIONS = CommonSettings.model_fields["kafka_partitions"].default


def _snapshots(hub: SyntheticHub, day: int) -> list[ModelSnapshot]:
    c = hub.day_columns(day)
    return [
        ModelSnapshot(
            model_id=str(c.model_id[i]),
            snapshot_date=c.date,
            downloads=int(c.downloads[i]),
            downloads_all_time=int(c.downloads_all_time[i]) if c.downloads_all_time[i] >= 0 else None,
            likes=int(c.likes[i]),
            trending_rank=int(c.trending_rank[i]) if c.trending_rank[i] > 0 else None,
            pipeline_tag=c.pipeline_vocab[c.pipeline_code[i]] if c.pipeline_code[i] >= 0 else None,
            library_name=c.library_vocab[c.library_code[i]] if c.library_code[i] >= 0 else None,
            tags=list(c.tags_vocab[c.tags_code[i]]),
            created_at=dt.datetime.fromtimestamp(float(c.created_ts[i]), dt.UTC),
            source="bench",
        )
        for i in range(len(c))
    ]


def _timed(results: dict[str, float], name: str, rows: int, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    results[name] = round(rows / seconds) if seconds > 0 else float("inf")
    typer.echo(f"{name:<34} {seconds:8.3f} s {results[name]:>12,.0f} rows/s")
    return out


def run(models: int, batch: int, seed: int = 1) -> dict[str, Any]:
    from hubpulse_features import service as features
    from hubpulse_scorer import service as scorer
    from hubpulse_scorer.bootstrap import train_bootstrap

    hub = SyntheticHub(models, HISTORY_WINDOW_DAYS, seed=seed)
    last = HISTORY_WINDOW_DAYS - 1
    older = [s for d in range(last) for s in _snapshots(hub, d)]
    today = _snapshots(hub, last)[:batch]
    n = len(today)
    raw = [b.model_dump_json().encode() for b in ModelSnapshotBatch.of_many(today)]
    ids = {s.model_id for s in today}
    window = features.records_frame(
        features.snapshot_records(ModelSnapshotBatch.of_many([*(s for s in older if s.model_id in ids), *today]))
    )
    model = train_bootstrap(2000, 60, seed=0)
    r: dict[str, float] = {}
    typer.echo(f"batch of {n} model-days, window {len(window)} rows")

    # features handler
    snaps = _timed(r, "features.decode", n, lambda: [ModelSnapshotBatch.model_validate_json(b) for b in raw])
    records = _timed(r, "features.records", n, lambda: features.snapshot_records(snaps))
    # as the handler does: a batch's features from its keys (its stats come back from the stored window)
    keys = _timed(r, "features.keys", n, lambda: features.records_keys(records))
    _timed(r, "features.compute", n, lambda: features.batch_features(window, keys))
    # what the close stores and publishes carries the day's stats beside the features
    feats = features.batch_features(window, features.records_frame(records), cross_sectional=True)
    _timed(r, "features.copy_records", n, lambda: features.feature_rows_copy(feats, provisional=True))
    payloads = _timed(r, "features.events_encoded", n, lambda: features.feature_batches(feats, partitions=_PARTITIONS))
    ModelFeaturesPacked.model_validate_json(payloads[0][1])  # what we emit validates

    # scorer handler
    messages = _timed(r, "scorer.decode", n, lambda: [ModelFeaturesPacked.model_validate_json(p) for _, p in payloads])
    rows = _timed(r, "scorer.rows", n, lambda: scorer.feature_rows(messages))
    latest = _timed(r, "scorer.latest", n, lambda: scorer.latest_per_model_day(rows))
    # as the scorer's handler does: TreeSHAP for the picks only (the others are explained when read)
    scored = _timed(r, "scorer.score+explain", n, lambda: scorer.score(model, latest, 5, picks_only=True))
    _timed(r, "scorer.catalog_records", n, lambda: scorer.catalog_records(scored))
    out = _timed(r, "scorer.events_encoded", n, lambda: scorer.score_messages(scored, _PARTITIONS))
    ModelScoresBatch.model_validate_json(out[0][1])
    total_f = sum(n / r[k] for k in r if k.startswith("features."))
    total_s = sum(n / r[k] for k in r if k.startswith("scorer."))
    r["features.total"] = round(n / total_f)
    r["scorer.total"] = round(n / total_s)
    typer.echo(f"features total {r['features.total']:,} rows/s, scorer total {r['scorer.total']:,} rows/s")
    return {"models": n, "rows_per_s": r}


def main(
    models: int = typer.Option(50_000, help="Models in the synthetic Hub"),
    batch: int = typer.Option(50_000, help="Model-days in the timed batch"),
    json_out: str | None = typer.Option(None, "--json", help="Write the figures here"),
) -> None:
    np.seterr(all="ignore")
    report = run(models, batch)
    if json_out:
        with open(json_out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    typer.run(main)
