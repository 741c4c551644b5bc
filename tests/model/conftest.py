"""A small deterministic synthetic history with gaps, new and deleted models, resets, surges and ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def make_history(n_models: int = 120, n_days: int = 90, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01")
    base = rng.lognormal(6, 1.5, n_models)
    rows = []
    likes = rng.integers(0, 50, n_models).astype(float)
    burst_day = rng.integers(10, n_days, n_models)
    bursty = rng.random(n_models) < 0.3
    first_day = np.where(rng.random(n_models) < 0.2, rng.integers(1, 40, n_models), 0)
    last_day = np.where(rng.random(n_models) < 0.1, rng.integers(50, n_days, n_models), n_days)
    for t in range(n_days):
        boost = np.where(bursty & (t >= burst_day), 1 + 0.4 * np.minimum(t - burst_day, 10), 1.0)
        downloads = np.round(base * boost * rng.lognormal(0, 0.05, n_models))
        likes += rng.poisson(np.where(bursty & (t >= burst_day - 3), 5.0, 0.3))
        score = likes - likes * 0 + rng.normal(0, 1, n_models) + np.where(bursty & (t >= burst_day - 3), 50, 0)
        alive = (t >= first_day) & (t < last_day) & (rng.random(n_models) > 0.05)  # 5% missing days
        order = np.argsort(-score[alive], kind="stable")
        rank = np.empty(alive.sum())
        rank[order] = np.arange(1, alive.sum() + 1)
        for j, m in enumerate(np.flatnonzero(alive)):
            rows.append(
                {
                    "snapshot_date": start + pd.Timedelta(days=t),
                    "model_id": f"org{m % 7}/model-{m}",
                    "downloads": float(downloads[m]),
                    "downloads_all_time": float(downloads[m] * (t + 5)),
                    "likes": float(likes[m]) if not (m == 3 and t > 60) else 0.0,  # a counter reset
                    "pipeline_tag": ["text-generation", "fill-mask", None][m % 3],
                    "library_name": "transformers",
                    "created_at": start - pd.Timedelta(days=int(m)) if m % 4 else pd.NaT,
                    "trending_rank": float(rank[j]),
                }
            )
    frame = pd.DataFrame(rows)
    frame["created_at"] = frame["created_at"].astype("datetime64[ns]")
    return frame


@pytest.fixture(scope="session")
def history() -> pd.DataFrame:
    return make_history()
