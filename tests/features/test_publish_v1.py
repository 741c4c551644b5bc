"""The close publishes hub.features.v3; with HUBPULSE_FEATURES_PUBLISH_V2 also hub.features.v2 (the features as JSON
numbers), with HUBPULSE_FEATURES_PUBLISH_V1 also hub.features.v1, one message per model-day: each carrying exactly
the rows of the v3 messages (consumers of v1 and v2 keep working until they move)."""

from __future__ import annotations

import uuid

import pytest
from support.topics import worker_io

from features.support import hub_snapshots, received
from hubpulse_common.events import ModelFeatures, ModelFeaturesBatch, ModelFeaturesPacked
from hubpulse_common.settings import load_settings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features import repository
from hubpulse_features.app import MIGRATIONS
from hubpulse_features.handlers import FeaturesWorker
from hubpulse_features.settings import FeaturesSettings


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_settings_are_off_by_default(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    assert getattr(load_settings(FeaturesSettings), f"features_publish_{version}") is False
    monkeypatch.setenv(f"HUBPULSE_FEATURES_PUBLISH_{version.upper()}", "true")
    assert getattr(load_settings(FeaturesSettings), f"features_publish_{version}") is True


@pytest.mark.parametrize(("publish_v1", "publish_v2"), [(False, False), (True, False), (False, True)])
async def test_the_close_publishes_v3_and_v2_or_v1_only_when_asked(
    service_env: dict[str, str], database_url: str, publish_v1: bool, publish_v2: bool
) -> None:
    prefix = f"p1{uuid.uuid4().hex[:6]}-"
    bootstrap = service_env["HUBPULSE_KAFKA_BOOTSTRAP"]
    io = worker_io(bootstrap, database_url, MIGRATIONS, "alembic_version_features", "features-publish-v1-test")
    async with io as (pool, bus):
        await repository.ensure_feature_set(pool)
        worker = FeaturesWorker(pool, bus, publish_v1=publish_v1, publish_v2=publish_v2)
        events = hub_snapshots(SyntheticHub(40, 1, seed=4), 0, prefix)
        await worker.handle(received(events))
        await worker.close_day(events[0].snapshot_date)

    assert set(bus.published) == {
        ModelFeaturesPacked.topic,
        *([ModelFeatures.topic] if publish_v1 else []),
        *([ModelFeaturesBatch.topic] if publish_v2 else []),
    }
    rows = [
        r for v in bus.published[ModelFeaturesPacked.topic] for r in ModelFeaturesPacked.model_validate_json(v).as_v1()
    ]
    ours = {r.model_id: r.model_dump(exclude={"occurred_at"}) for r in rows if r.model_id.startswith(prefix)}
    assert len(ours) == len(events)
    if publish_v2:  # the same rows, the same values: only the features' encoding differs
        v2 = [
            r
            for v in bus.published[ModelFeaturesBatch.topic]
            for r in ModelFeaturesBatch.model_validate_json(v).as_v1()
        ]
        assert {r.model_id: r.model_dump(exclude={"occurred_at"}) for r in v2 if r.model_id.startswith(prefix)} == ours
    if publish_v1:
        # the same rows, each on its own (v3's messages are sliced by partition, so their order differs)
        v1 = [ModelFeatures.model_validate_json(v) for v in bus.published[ModelFeatures.topic]]
        assert {e.model_id: e.model_dump(exclude={"occurred_at"}) for e in v1 if e.model_id.startswith(prefix)} == ours
