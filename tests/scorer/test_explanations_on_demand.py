"""Explanations where they are read (issue 21): a batch explains its picks, the swap the first models of each
sort, and the model detail of any other model gets its explanation from the scorer on demand: the same text the
eager computation gives for the same row and model version, stored, and not computed again. The scores
(probabilities) are the eager ones."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
import numpy as np
from auth.conftest import serving
from features.support import fetch, publish, settings_for
from prometheus_client import REGISTRY
from support.polling import wait_for
from support.topics import published_scores

from hubpulse.platform.stores import free_port
from hubpulse_common import db
from hubpulse_common.catalog_details import details_of
from hubpulse_common.events import ModelFeatures, ModelFeaturesPacked
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_scorer import catalog_swap, repository, service
from hubpulse_scorer.app import MIGRATIONS
from hubpulse_scorer.app import create_app as create_scorer_app
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.repository import write_batch
from hubpulse_scorer.service import CATALOG_COLUMNS
from hubpulse_scorer.settings import ScorerSettings
from scorer.test_catalog_schema import SET, VERSION_TABLE, _record
from scorer.test_scorer_pipeline import _registry

MODELS = 40
TOP_N = 2  # the swap explains the first 2 of each of the 5 sorts: most non-picks are left to the detail

# the catalog's rows with their details, where the model page reads them
_WITH_DETAILS = f"FROM catalog_models m CROSS JOIN LATERAL ({details_of('m')}) d"


def _events(model: TrainedModel, prefix: str, day: dt.date) -> list[ModelFeatures]:
    rng = np.random.default_rng(3)
    events = []
    for i in range(MODELS):
        values = rng.normal(scale=2.0, size=len(model.feature_columns))
        columns = zip(model.feature_columns, values, strict=True)
        features = {c: (None if rng.random() < 0.15 else float(v)) for c, v in columns}
        events.append(
            ModelFeatures(
                model_id=f"{prefix}m{i}",
                snapshot_date=day,
                features=features,
                downloads=int(rng.integers(0, 10_000)),
                likes=int(rng.integers(0, 500)),
                day_models=MODELS,  # the day is complete once all are scored: swapped in at once
            )
        )
    return events


def _on_demand() -> float:
    return REGISTRY.get_sample_value("hubpulse_scorer_explained_after_scoring_total", {"when": "on_demand"}) or 0.0


def _shown(explanation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: c[k] for k in ("feature", "value", "contribution")} for c in explanation]


def serving_challenger(
    service_env: dict[str, str], database_url: str, challenger: TrainedModel, own_kafka: Any, **settings: Any
) -> tuple[ScorerSettings, str]:
    """Scorer settings on the test's own broker, with a registry of its own whose current version is `challenger`
    (no bootstrap training); and that version."""
    bucket = f"t-{uuid.uuid4().hex[:10]}"
    registry = _registry(service_env, bucket)
    version = registry.promote(registry.register(challenger).version).version
    scorer = settings_for(
        ScorerSettings,
        {**service_env, "HUBPULSE_KAFKA_BOOTSTRAP": own_kafka.url},
        database_url,
        s3_bucket=bucket,
        catalog_swap_check_s=0.2,
        **settings,
    )
    return scorer, version


def rows_of(events: list[ModelFeatures]) -> service.FeatureRows:
    """One day's events as the scorer reads them from hub.features.v3."""
    return service.feature_rows([ModelFeaturesPacked.of(events)])


async def test_an_unexplained_models_detail_gets_the_eager_explanation_once(
    service_env: dict[str, str], database_url: str, challenger: TrainedModel, own_kafka: Any
) -> None:
    prefix = f"e{uuid.uuid4().hex[:6]}/"
    scorer, version = serving_challenger(service_env, database_url, challenger, own_kafka, explain_top_n=TOP_N)
    day = dt.date(2031, 3, 4)
    events = _events(challenger, prefix, day)
    eager = service.score(challenger, rows_of(events), 5)  # today's computation: every row explained
    expected = dict(zip([e.model_id for e in events], eager.explanations, strict=True))
    probability = dict(zip([e.model_id for e in events], eager.probability.tolist(), strict=True))
    picks = {e.model_id for e, p in zip(events, eager.probability, strict=True) if p >= challenger.metadata.threshold}
    async with serving(create_scorer_app(scorer)) as scorer_url:
        await publish(own_kafka.url, [ModelFeaturesPacked.of(events)])
        catalog = await wait_for(
            lambda: fetch(database_url, "SELECT model_id FROM catalog_models WHERE model_id LIKE $1", prefix + "%"),
            lambda rows: len(rows) == MODELS,
            timeout_s=90,
        )
        assert len(catalog) == MODELS

        # the scores are today's; only the picks carry their explanation from the batch (what it published: the
        # build rows also hold what the swap's preparation explained since)
        scores = await published_scores(own_kafka.url, prefix)
        assert {s.model_id: s.probability for s in scores} == probability
        assert {s.model_version for s in scores} == {version}
        assert {s.model_id: [c.model_dump() for c in s.top_features] for s in scores} == {
            m: (json.loads(text) if m in picks else []) for m, text in expected.items()
        }
        details = {
            r["model_id"]: r
            for r in await fetch(database_url, f"SELECT m.model_id, d.model_version, d.explanation {_WITH_DETAILS}")
        }
        assert {r["model_version"] for r in details.values()} == {version}
        # picks and the swap's first models of each sort: explained already, as eagerly
        explained = {m for m, r in details.items() if r["explanation"] is not None}
        assert picks <= explained
        assert all(details[m]["explanation"] == expected[m] for m in explained)
        unexplained = sorted(set(expected) - explained)
        assert unexplained, "every model was precomputed: nothing left to explain on demand"

        gateway = GatewaySettings(
            database_url=database_url,
            kafka_bootstrap=own_kafka.url,
            environment="test",
            scorer_url=scorer_url,
            api_rate_limit="100000/minute",
        )
        async with serving(create_gateway_app(gateway)) as gateway_url, httpx.AsyncClient(timeout=30) as http:
            model_id = unexplained[0]
            before = _on_demand()
            first = await http.get(f"{gateway_url}/v1/models/{model_id}")
            assert first.status_code == 200, first.text
            assert _shown(first.json()["explanation"]) == json.loads(expected[model_id])
            assert first.json()["explanation"][0]["text"]  # the detail's shape: each contribution in words
            assert _on_demand() == before + 1
            stored = await fetch(database_url, f"SELECT d.explanation {_WITH_DETAILS} WHERE m.model_id = $1", model_id)
            assert stored[0]["explanation"] == expected[model_id]  # kept in the row: the next read is a plain read

            again = await http.get(f"{gateway_url}/v1/models/{model_id}")
            assert again.json()["explanation"] == first.json()["explanation"]
            pick = sorted(picks or explained)[0]
            precomputed = await http.get(f"{gateway_url}/v1/models/{pick}")
            assert _shown(precomputed.json()["explanation"]) == json.loads(expected[pick])
            assert _on_demand() == before + 1  # neither the cached nor the precomputed one was computed again

            # bad input: a clear 404 from the scorer, never a 5xx
            unknown = await http.get(f"{scorer_url}/explanation", params={"model_id": "no/such-model"})
            assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
            # in the catalog, with details of no model version
            unscored_id = prefix + "unscored"
            await fetch(
                database_url, "INSERT INTO catalog_models (model_id, snapshot_date) VALUES ($1, $2)", unscored_id, day
            )
            await fetch(
                database_url, "INSERT INTO catalog_details (model_id, snapshot_date) VALUES ($1, $2)", unscored_id, day
            )
            unscored = await http.get(f"{scorer_url}/explanation", params={"model_id": prefix + "unscored"})
            assert (unscored.status_code, unscored.json()["error"]["code"]) == (404, "model_not_scored")
            absent = await http.get(f"{gateway_url}/v1/models/no/such-model")
            assert absent.status_code == 404

        # the scorer unreachable: the detail still answers, without an explanation (the page says it has none)
        unreachable = gateway.model_copy(update={"scorer_url": f"http://127.0.0.1:{free_port()}"})
        async with serving(create_gateway_app(unreachable)) as gateway_url, httpx.AsyncClient(timeout=30) as http:
            detail = await http.get(f"{gateway_url}/v1/models/{unexplained[1]}")
            assert detail.status_code == 200, detail.text
            assert detail.json()["explanation"] == []


def test_a_batch_explains_its_picks_as_the_eager_computation_and_scores_the_same(challenger: TrainedModel) -> None:
    events = _events(challenger, "b/", dt.date(2031, 3, 5))
    rows = rows_of(events)
    eager = service.score(challenger, rows, 5)
    picks = eager.probability >= challenger.metadata.threshold
    assert picks.any()
    assert not picks.all()
    lean = service.score(challenger, rows, 5, picks_only=True)
    assert lean.probability.tolist() == eager.probability.tolist()
    assert lean.explanations == [text if pick else None for text, pick in zip(eager.explanations, picks, strict=True)]
    # a batch without a pick explains nothing (and scores it all)
    quiet = rows.take(np.flatnonzero(~picks).tolist())
    assert service.score(challenger, quiet, 5, picks_only=True).explanations == [None] * len(quiet)


async def test_a_redelivered_batch_keeps_an_explanation_computed_on_demand(database_url: str) -> None:
    await db.migrate(database_url, MIGRATIONS, VERSION_TABLE)
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    day = dt.date(2031, 3, 6)
    explained = json.dumps([{"feature": "likes_7d", "value": 1.0, "contribution": 0.7}])

    def unexplained(on: dt.date, likes_7d: float) -> tuple[object, ...]:
        row = list(_record("c/a", on, 10, likes_7d))
        row[CATALOG_COLUMNS.index("explanation")] = None
        return tuple(row)

    async def stored() -> str | None:
        row = await repository.explanation_source(pool, "c/a")
        assert row is not None
        text: str | None = row["explanation"]
        return text

    async def explain_now() -> None:
        row = await repository.explanation_source(pool, "c/a")
        assert row is not None
        await repository.cache_explanations(pool, [row], [explained])

    async def write(on: dt.date, likes_7d: float) -> None:
        """A batch of one row, then its day's catalog swapped in (the model page reads the swapped row's details)."""
        await write_batch(pool, [unexplained(on, likes_7d)], [], feature_sets=[SET])
        assert await catalog_swap.swap_day(pool, on)

    try:
        await write(day, 1.0)
        assert await stored() is None
        await explain_now()
        assert await stored() == explained
        await write(day, 1.0)  # a redelivery: the same features, same version
        assert await stored() == explained
        await write(day, 2.0)  # other features: what was explained is gone
        assert await stored() is None
        await explain_now()
        await write(day + dt.timedelta(days=1), 2.0)  # a new day
        assert await stored() is None
    finally:
        await pool.close()
