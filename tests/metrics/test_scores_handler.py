"""The watches' consumer of hub.scores.v2: a consumed batch (up to 1,000 scores a message) judged in bounded chunks."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from hubpulse_common.events import ModelScoresBatch
from hubpulse_common.kafka import Received
from hubpulse_common.settings import load_settings
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches import handlers
from metrics.watch_support import scores

DAY1 = date(2026, 11, 1)


async def test_a_batch_of_v2_messages_is_judged_in_chunks_in_order(monkeypatch: Any) -> None:
    """A consumed batch of hub.scores.v2 messages holds up to 1,000 scores a message: judged JUDGE_CHUNK at a time
    (each chunk's look-ups are single queries), in the order received, each chunk stored before the next is judged,
    the alerts' wake-up set once any is new."""
    judged: list[list[str]] = []
    steps: list[str] = []

    async def alerts(db: Any, settings: Any, scores: list[Any]) -> int:
        judged.append([s.model_id for s in scores])
        steps.append("judge")
        return 1 if any(s.model_id == "org/c" for s in scores) else 0

    async def store_scores(db: Any, scores: list[Any]) -> None:
        steps.append("store")

    monkeypatch.setattr(handlers, "_alerts", alerts)
    monkeypatch.setattr(handlers.repository, "store_scores", store_scores)
    monkeypatch.setattr(handlers, "JUDGE_CHUNK", 2)
    wake = asyncio.Event()
    handle = handlers.scores_handler(None, load_settings(MetricsSettings), wake)  # type: ignore[arg-type]
    messages = [scores(["org/a", "org/b", "org/c"], DAY1, 0.5), scores(["org/d", "org/e"], DAY1, 0.5)]
    await handle([Received(m, ModelScoresBatch.topic, 0, i, None) for i, m in enumerate(messages)])
    assert judged == [["org/a", "org/b"], ["org/c", "org/d"], ["org/e"]]
    assert steps == ["judge", "store"] * 3
    assert wake.is_set()
