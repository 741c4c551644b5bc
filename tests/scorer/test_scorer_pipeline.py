"""Registry and scorer against the real broker, PostgreSQL and S3 (moto): bootstrap, promote, rollback, e2e."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
import pandas as pd
import pytest
from features.support import (
    fetch,
    hub_snapshots,
    open_days,
    publish,
    published_features,
    running,
    settings_for,
    stored_features_truth,
)
from support.polling import wait_for
from support.quick import SMALL_BOOTSTRAP
from support.topics import published_scores

from hubpulse.platform.stores import free_port, wait_port
from hubpulse_common import feature_vectors
from hubpulse_common.catalog_details import details_of
from hubpulse_common.errors import InputError
from hubpulse_common.events import ModelScore
from hubpulse_common.features import CROSS_FEATURE_COLUMNS, FEATURE_COLUMNS
from hubpulse_common.s3 import aws_client, ensure_bucket
from hubpulse_common.settings import CommonSettings, load_settings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_features.app import create_app as create_features_app
from hubpulse_features.settings import FeaturesSettings
from hubpulse_scorer.app import create_app as create_scorer_app
from hubpulse_scorer.registry import ModelRegistry
from hubpulse_scorer.settings import ScorerSettings

# positions of the time features in a stored vector (the stream stores them; the day-wide ranks are published)
_TIME = [i for i, c in enumerate(FEATURE_COLUMNS) if c not in CROSS_FEATURE_COLUMNS]

# each catalog row with its details (where the model page reads them)
_CATALOG_WITH_DETAILS = (
    "SELECT m.model_id, m.snapshot_date, m.downloads, m.probability, m.model_version, d.explanation, "  # noqa: S608
    "d.snapshot_date AS details_date, m.likes_7d, d.features, d.names FROM catalog_models m "
    f"CROSS JOIN LATERAL ({details_of('m')}) d WHERE m.model_id LIKE $1"
)


def _registry(service_env: dict[str, str], bucket: str) -> ModelRegistry:
    settings = load_settings(CommonSettings, s3_endpoint=service_env["HUBPULSE_S3_ENDPOINT"], s3_bucket=bucket)
    client = aws_client("s3", settings)
    ensure_bucket(client, bucket)
    return ModelRegistry(client, bucket)


def test_registry_versions_promote_rollback(service_env, challenger) -> None:
    registry = _registry(service_env, f"t-{uuid.uuid4().hex[:10]}")
    assert registry.current() is None
    with pytest.raises(InputError, match="nothing to roll back"):
        registry.rollback()
    first = registry.register(challenger)
    with pytest.raises(InputError, match="already registered"):
        registry.register(challenger)
    assert first.metadata["training_window"]
    assert first.metadata["data_hash"]
    assert first.metadata["feature_columns"]
    with pytest.raises(InputError, match="not registered"):
        registry.promote("no-such-version")
    assert registry.promote(first.version).version == first.version
    loaded = registry.load(first.version)
    assert loaded.metadata == challenger.metadata
    assert [e.version for e in registry.entries()] == [first.version]


async def test_snapshot_to_catalog_with_bootstrap_promotion_and_rollback(
    service_env, database_url, challenger, own_kafka
) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    bucket = f"t-{uuid.uuid4().hex[:10]}"
    hub = SyntheticHub(60, 4, seed=5)
    days = [hub_snapshots(hub, d, prefix) for d in range(4)]
    # features are published when a day closes: a quiet second closes the last day published
    # a broker of its own: on the session's, new consumer groups would first read every earlier test's snapshots
    env = {**service_env, "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url}
    features = settings_for(FeaturesSettings, env, database_url, day_close_idle_s=1.0, day_close_check_s=0.3)
    scorer = settings_for(ScorerSettings, env, database_url, s3_bucket=bucket, model_poll_s=0.3, **SMALL_BOOTSTRAP)

    async def scores_of(day_index: int) -> list:
        return await fetch(
            database_url,
            "SELECT model_id, model_version, probability, explanation FROM catalog_build "
            "WHERE snapshot_date = $1 AND model_id LIKE $2",
            days[day_index][0].snapshot_date,
            prefix + "%",
        )

    async with running(create_features_app(features)), running(create_scorer_app(scorer)) as app:
        worker = app.state.worker
        await wait_for(lambda: _loaded(worker), bool, timeout_s=90)  # the empty registry was bootstrapped
        registry = _registry(service_env, bucket)
        bootstrap = registry.current()
        assert bootstrap is not None
        assert bootstrap.version == worker.version
        assert registry.entry(bootstrap.version).metadata["extra"]["bootstrap"] is True

        # day 0 and day 1, day 1 delivered twice: one score per model-day-version
        await publish(features.kafka_bootstrap, [*days[0], *days[1], *days[1]])
        rows = await wait_for(lambda: scores_of(1), lambda r: len(r) >= len(days[1]))
        assert len(rows) == len(days[1]) == len({r["model_id"] for r in rows})
        assert {r["model_version"] for r in rows} == {bootstrap.version}
        for r in rows:
            assert 0.0 <= r["probability"] <= 1.0

        # a batch explains its picks; the others are explained where they are read (the catalog, below). What the
        # batch wrote is what it published (the build rows also hold what the swap's preparation explained since)
        async def day_1_scores() -> dict[str, ModelScore]:
            scores = await published_scores(features.kafka_bootstrap, prefix)
            return {s.model_id: s for s in scores if s.snapshot_date == days[1][0].snapshot_date}

        published = await wait_for(day_1_scores, lambda p: len(p) == len(days[1]))
        for r in rows:
            score = published[r["model_id"]]
            assert score.probability == r["probability"]
            if r["probability"] < worker.model.metadata.threshold:
                assert score.top_features == []
                continue
            assert score.top_features
            assert json.loads(r["explanation"]) == [c.model_dump() for c in score.top_features]
        catalog = await wait_for(
            lambda: fetch(
                database_url,
                _CATALOG_WITH_DETAILS,
                prefix + "%",
            ),
            lambda r: len(r) == len(days[1]) and all(x["snapshot_date"] == days[1][0].snapshot_date for x in r),
        )
        by_id = {e.model_id: e for e in days[1]}
        assert all(c["downloads"] == by_id[c["model_id"]].downloads and json.loads(c["explanation"]) for c in catalog)
        # features and explanation are the build row's of the catalog's day; picks read likes_7d from the row itself
        assert all(c["details_date"] == c["snapshot_date"] for c in catalog)
        assert all(c["likes_7d"] == feature_vectors.decode(c["features"], c["names"])["likes_7d"] for c in catalog)

        # a promoted version is picked up without a restart
        entry = registry.register(challenger)
        registry.promote(entry.version)
        await wait_for(lambda: _version(worker), lambda v: v == entry.version)
        await publish(features.kafka_bootstrap, days[2])
        rows = await wait_for(lambda: scores_of(2), lambda r: len(r) >= len(days[2]))
        assert {r["model_version"] for r in rows} == {entry.version}

        # rollback: the bootstrap version serves again
        assert registry.rollback().version == bootstrap.version
        await wait_for(lambda: _version(worker), lambda v: v == bootstrap.version)
        await publish(features.kafka_bootstrap, days[3])
        rows = await wait_for(lambda: scores_of(3), lambda r: len(r) >= len(days[3]))
        assert {r["model_version"] for r in rows} == {bootstrap.version}
        daily = await fetch(
            database_url, "SELECT count(*) AS n FROM catalog_daily WHERE model_id LIKE $1", prefix + "%"
        )
        assert daily[0]["n"] == sum(len(d) for d in days)


async def _loaded(worker) -> bool:
    return worker.loaded.is_set()


async def _version(worker) -> str | None:
    return worker.version


def _service(package: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", package], env={**os.environ, **env, "HUBPULSE_PORT": str(port)}, stderr=subprocess.PIPE
    )
    assert wait_port(port, 60, proc), proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    return proc


async def _kill_midway(proc: subprocess.Popen[bytes], rows: Callable[[], Awaitable[int]]) -> int:
    """SIGKILL the process as soon as some, but not all, of its rows are written; returns the count seen."""
    count = await wait_for(rows, lambda n: n > 0, timeout_s=90)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return count


async def test_kill_9_of_features_and_scorer_mid_stream_loses_and_duplicates_nothing(
    service_env, database_url, challenger, own_kafka
) -> None:
    """kill -9 of each service while it works: after restarts, every model-day has exactly its one feature
    row (equal to the batch computation) and its one score, and the catalog has every model's last day."""
    prefix = f"k{uuid.uuid4().hex[:6]}-"
    bucket = f"t-{uuid.uuid4().hex[:10]}"
    registry = _registry(service_env, bucket)
    version = registry.promote(registry.register(challenger).version).version  # no bootstrap training
    hub = SyntheticHub(300, 4, seed=11)
    days = [hub_snapshots(hub, d, prefix) for d in range(4)]
    expected = sum(len(d) for d in days)
    env = {
        **service_env,
        "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url,
        "HUBPULSE_DATABASE_URL": database_url,
        "HUBPULSE_S3_BUCKET": bucket,
        # many small batches (4 messages of 25 snapshots, or of one day's features): the kill lands mid-stream
        "HUBPULSE_BATCH_SIZE": "4",
        "HUBPULSE_DAY_CLOSE_IDLE_S": "1",
        "HUBPULSE_DAY_CLOSE_CHECK_S": "0.3",
    }
    features_env = {**env, "HUBPULSE_SERVICE_NAME": "features", "HUBPULSE_CONSUMER_GROUP": f"f-{prefix}"}
    scorer_env = {**env, "HUBPULSE_SERVICE_NAME": "scorer", "HUBPULSE_CONSUMER_GROUP": f"s-{prefix}"}

    async def count(query: str) -> int:
        return int((await fetch(database_url, query, prefix + "%"))[0]["n"])

    async def feature_rows() -> int:
        return await count("SELECT count(*) AS n FROM feature_rows WHERE model_id LIKE $1")

    async def scores() -> int:
        return await count("SELECT count(*) AS n FROM catalog_daily WHERE model_id LIKE $1")

    procs = [_service("hubpulse_features", features_env), _service("hubpulse_scorer", scorer_env)]
    try:
        await publish(own_kafka.url, [e for day in days for e in day], rows=25)
        seen = await _kill_midway(procs[0], feature_rows)
        assert seen < expected, "features finished before the kill: the test proves nothing"
        procs[0] = _service("hubpulse_features", features_env)
        seen = await _kill_midway(procs[1], scores)
        assert seen < expected, "the scorer finished before the kill: the test proves nothing"
        procs[1] = _service("hubpulse_scorer", scorer_env)
        await wait_for(scores, lambda n: n >= expected, timeout_s=120)
        await wait_for(lambda: open_days(database_url), lambda n: n == 0)
        # the catalog is swapped in once a day's scores are all in: wait for the last day's
        await wait_for(
            lambda: count("SELECT count(*) AS n FROM catalog_models WHERE model_id LIKE $1"),
            lambda n: n == len({e.model_id for day in days for e in day}),
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

    rows = await fetch(
        database_url,
        "SELECT f.snapshot_date, f.model_id, f.values, f.provisional, count(s.*) AS scores, "
        "min(s.model_version) AS version FROM feature_rows f "
        "LEFT JOIN catalog_daily s USING (snapshot_date, model_id) WHERE f.model_id LIKE $1 "
        "GROUP BY f.snapshot_date, f.model_id, f.values, f.provisional",
        prefix + "%",
    )
    assert len(rows) == expected
    assert all(not r["provisional"] and r["scores"] == 1 and r["version"] == version for r in rows)
    truth = (await stored_features_truth(database_url)).set_index(["snapshot_date", "model_id"])
    # the features published (each model-day's last event: a close killed midway republishes its day), every
    # column; and the time features stored, the one write of each model-day
    published = await published_features(own_kafka.url, prefix)
    assert len(published) == expected
    keys = pd.MultiIndex.from_arrays([published["snapshot_date"], published["model_id"]])
    want = truth.reindex(keys)[list(FEATURE_COLUMNS)].to_numpy(dtype="float32")
    np.testing.assert_allclose(published[list(FEATURE_COLUMNS)].to_numpy(), want, rtol=1e-6, equal_nan=True)
    stored = np.asarray([r["values"] for r in rows], dtype="float32")[:, _TIME]
    keys = pd.MultiIndex.from_arrays(
        [pd.to_datetime([r["snapshot_date"] for r in rows]), [r["model_id"] for r in rows]]
    )
    want = truth.reindex(keys)[list(FEATURE_COLUMNS)].to_numpy(dtype="float32")[:, _TIME]
    np.testing.assert_allclose(stored, want, rtol=1e-6, equal_nan=True)
    catalog = await fetch(database_url, "SELECT snapshot_date FROM catalog_models WHERE model_id LIKE $1", prefix + "%")
    assert len(catalog) == len({e.model_id for day in days for e in day})
    assert {c["snapshot_date"] for c in catalog} <= {day[0].snapshot_date for day in days}
