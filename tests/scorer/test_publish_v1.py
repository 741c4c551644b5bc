"""The scorer publishes hub.scores.v2; with HUBPULSE_SCORES_PUBLISH_V1 (on through the dual-publishing window) also
hub.scores.v1, one message per score: the same scores (consumers of v1 keep working until they move)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from support.topics import worker_io

from hubpulse_common.events import ModelFeaturesPacked, ModelScore, ModelScoresBatch
from hubpulse_common.kafka import Received
from hubpulse_common.settings import load_settings
from hubpulse_scorer.app import MIGRATIONS
from hubpulse_scorer.handlers import ScorerWorker
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.settings import ScorerSettings
from scorer.test_explanations_on_demand import MODELS, _events


def test_v1_is_on_by_default_through_the_dual_publishing_window(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(ScorerSettings).scores_publish_v1 is True
    monkeypatch.setenv("HUBPULSE_SCORES_PUBLISH_V1", "false")
    assert load_settings(ScorerSettings).scores_publish_v1 is False


@pytest.mark.parametrize("publish_v1", [False, True])
async def test_the_scorer_publishes_v2_and_v1_only_when_asked(
    service_env: dict[str, str], database_url: str, challenger: TrainedModel, publish_v1: bool
) -> None:
    prefix = f"s1{uuid.uuid4().hex[:6]}/"
    events = _events(challenger, prefix, dt.date(2031, 5, 1))
    messages = [ModelFeaturesPacked.of(events[: MODELS // 2]), ModelFeaturesPacked.of(events[MODELS // 2 :])]
    bootstrap = service_env["HUBPULSE_KAFKA_BOOTSTRAP"]
    io = worker_io(bootstrap, database_url, MIGRATIONS, "alembic_version_scorer", "scorer-publish-v1-test")
    async with io as (pool, bus):
        worker = ScorerWorker(pool, bus, 5, publish_v1=publish_v1)
        worker.use(challenger)
        await worker.handle([Received(m, ModelFeaturesPacked.topic, 0, i, None) for i, m in enumerate(messages)])

    assert set(bus.published) == {ModelScoresBatch.topic, *([ModelScore.topic] if publish_v1 else [])}
    v2 = [s for v in bus.published[ModelScoresBatch.topic] for s in ModelScoresBatch.model_validate_json(v).as_v1()]
    ours = {s.model_id: s.model_dump(exclude={"occurred_at"}) for s in v2}
    assert sorted(ours) == sorted(e.model_id for e in events)
    assert {s["model_version"] for s in ours.values()} == {challenger.metadata.version}
    assert any(s["top_features"] for s in ours.values())  # the picks, explained
    if publish_v1:  # the same scores, each on its own
        v1 = [ModelScore.model_validate_json(v) for v in bus.published[ModelScore.topic]]
        assert {s.model_id: s.model_dump(exclude={"occurred_at"}) for s in v1} == ours
