"""`hubpulse bench watches`: the lag from a score's event to the signed webhook of the alert it sets off.

Starts the broker, MongoDB and the metrics service (its own process) for the run, a loopback webhook receiver,
and one watch per model (kind `model`, condition `threshold`, webhook to the receiver; written straight into
the metrics database as the watch API would). Each model gets yesterday's score under the threshold, then a
score that crosses it: the lag is from that score's `occurred_at` (stamped as it is published) to the webhook's
arrival. Two phases: `paced` (one crossing score at a time, `--spacing-ms` apart: one alert's own lag) and
`burst` (every remaining model's crossing score at once, as one scoring batch of a day lands).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pymongo import AsyncMongoClient
from tenacity import AsyncRetrying, RetryError, retry_if_result, stop_after_delay, wait_fixed

from hubpulse.bench.configs import WatchesBenchConfig
from hubpulse.bench.pipeline import started_child
from hubpulse.platform.stores import ProcessSpec, free_port, kafka_spec, mongo_spec, wait_ready
from hubpulse_common.events import (
    FEATURES_BATCH_ROWS,
    SCORES_BATCH_ROWS,
    ModelFeatures,
    ModelFeaturesPacked,
    ModelScoresBatch,
)
from hubpulse_common.identity import Identity
from hubpulse_common.kafka import EventBus
from hubpulse_common.watch_schemas import WatchIn

Say = Callable[[str], None]
DAY = dt.date(2026, 12, 1)
THRESHOLD = 0.45


class Receiver:
    """Records when each model's webhook arrived (wall clock), on a loopback port."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver.lock:
                    receiver.arrived.setdefault(body["data"]["model_id"], time.time())
                    receiver.lock.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, models: list[str], timeout_s: float) -> None:
        with self.lock:
            self.lock.wait_for(lambda: all(m in self.arrived for m in models), timeout_s)

    def close(self) -> None:
        self.server.shutdown()


def _stats(lags: list[float]) -> dict[str, Any]:
    if not lags:
        return {"alerts": 0}
    values = np.asarray(lags) * 1000
    p50, p95, p99 = (round(float(v), 1) for v in np.percentile(values, (50, 95, 99)))
    return {"alerts": len(lags), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": round(float(values.max()), 1)}


async def _stored_after(alerts: Any, models: list[str], start: float, timeout_s: float) -> float | None:
    """Seconds from `start` until every model's alert is stored (the score handler's part of the lag)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if await alerts.count_documents({"model_id": {"$in": models}}) >= len(models):
            return time.time() - start
        await asyncio.sleep(0.05)
    return None


def _scores(models: list[str], day: dt.date, probability: float) -> ModelScoresBatch:
    """A hub.scores.v2 message: these models' scores of `day`."""
    return ModelScoresBatch(
        snapshot_date=day,
        model_version="bench",
        label="trending",
        horizon_days=7,
        threshold=0.38,
        model_id=models,
        probability=[probability] * len(models),
        top_features=[[] for _ in models],
    )


async def _phase(
    bus: EventBus, receiver: Receiver, models: list[str], spacing_s: float, timeout_s: float, alerts: Any
) -> dict[str, Any]:
    sent: dict[str, float] = {}
    if spacing_s:
        for model in models:
            event = _scores([model], DAY, 0.8)
            sent[model] = event.occurred_at.timestamp()
            await bus.publish(event)
            await asyncio.sleep(spacing_s)
    else:  # as the scorer publishes a batch: many scores a message
        step = SCORES_BATCH_ROWS
        events = [_scores(models[i : i + step], DAY, 0.8) for i in range(0, len(models), step)]
        sent = {m: e.occurred_at.timestamp() for e in events for m in e.model_id}
        await bus.publish_many(events)
    stored = _stored_after(alerts, models, min(sent.values()), timeout_s)
    stored_s, _ = await asyncio.gather(stored, asyncio.to_thread(receiver.wait_for, models, timeout_s))
    lags = [receiver.arrived[m] - sent[m] for m in models if m in receiver.arrived]
    span = max((receiver.arrived[m] for m in models if m in receiver.arrived), default=0) - min(sent.values())
    report = {**_stats(lags), "missing": len(models) - len(lags), "span_s": round(span, 2)}
    if stored_s is not None:  # alerts per second: stored by the score handler, and delivered (webhooks)
        report |= {"stored_span_s": round(stored_s, 2), "stored_per_s": round(len(models) / max(stored_s, 1e-3), 1)}
    if span > 0:
        report["delivered_per_s"] = round(len(lags) / span, 1)
    return report


async def _measure(
    kafka: str,
    mongo: str,
    database: str,
    metrics_url: str,
    models: int,
    paced: int,
    spacing_s: float,
    timeout_s: float,
    say: Say,
) -> dict[str, Any]:
    receiver = Receiver()
    ids = [f"bench-{uuid.uuid4().hex[:6]}/model-{i}" for i in range(models)]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo)
    bus = EventBus(kafka, client_id="bench-watches")
    await bus.start()
    try:
        from hubpulse_metrics.watches import repository

        db = client[database]
        owner = Identity(user_id="bench", org_id="bench", role="admin")
        for model in ids:
            fields = {
                "kind": "model",
                "target": model,
                "threshold": THRESHOLD,
                "conditions": ["threshold"],
                "channels": {"webhook": receiver.url},
            }
            body = WatchIn.model_validate(fields)
            await repository.create_watch(db, owner, body)
        say(f"{models} watches; publishing features and yesterday's scores")
        await bus.publish_many(
            ModelFeaturesPacked.of(
                [
                    ModelFeatures(model_id=m, snapshot_date=day, features={}, downloads=1000)
                    for m in ids[start : start + FEATURES_BATCH_ROWS]
                ]
            )
            for day in (DAY - dt.timedelta(days=1), DAY)
            for start in range(0, len(ids), FEATURES_BATCH_ROWS)
        )
        await bus.publish_many(
            _scores(ids[start : start + SCORES_BATCH_ROWS], DAY - dt.timedelta(days=1), 0.2)
            for start in range(0, len(ids), SCORES_BATCH_ROWS)
        )
        # The under-threshold day is stored before any crossing is published (else the lag counts the backlog).
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2), retry=retry_if_result(lambda n: n < models)
        ):
            with attempt:
                stored = await db[repository.SCORES].count_documents({"model_id": {"$in": ids}})
            if attempt.retry_state.outcome is not None and not attempt.retry_state.outcome.failed:
                attempt.retry_state.set_result(stored)
        say(f"paced: {paced} crossing scores, {spacing_s * 1000:.0f} ms apart")
        alerts = db[repository.ALERTS]
        paced_report = await _phase(bus, receiver, ids[:paced], spacing_s, timeout_s, alerts)
        say(f"burst: {models - paced} crossing scores at once")
        burst_report = await _phase(bus, receiver, ids[paced:], 0.0, timeout_s, alerts)
        async with httpx.AsyncClient(timeout=10) as http:
            prom = (await http.get(f"{metrics_url}/metrics")).text
        return {
            "paced": paced_report,
            "burst": burst_report,
            "server_lag_histogram": [
                ln for ln in prom.splitlines() if ln.startswith("hubpulse_watch_delivery_lag_seconds_count")
            ],
        }
    finally:
        await bus.stop()
        await client.close()
        receiver.close()


def run(config: WatchesBenchConfig, say: Say) -> dict[str, Any]:
    models, paced, spacing_ms, timeout_s = config.models, config.paced, config.spacing_ms, config.timeout_s
    report: dict[str, Any] = {"models": models, "paced_models": paced, "spacing_ms": spacing_ms, "ok": False}
    with tempfile.TemporaryDirectory(prefix="hubpulse-bench-watches-") as tmp, ExitStack() as stack:
        work, logs = Path(tmp), Path(tmp) / "logs"
        say("starting the broker, MongoDB and the metrics service")
        kafka = stack.enter_context(started_child(kafka_spec(free_port()), logs))
        mongo = stack.enter_context(started_child(mongo_spec(work, free_port()), logs))
        port, database = free_port(), "bench_watches"
        env = {
            "HUBPULSE_KAFKA_BOOTSTRAP": kafka.spec.url,
            "HUBPULSE_MONGO_URL": mongo.spec.url,
            "HUBPULSE_MONGO_DATABASE": database,
            "HUBPULSE_PORT": str(port),
            "HUBPULSE_WATCH_WEBHOOK_ALLOW_LOOPBACK": "true",
            "HUBPULSE_LOG_LEVEL": "WARNING",
        }
        metrics = ProcessSpec(
            name="metrics",
            kind="service",
            port=port,
            url=f"http://127.0.0.1:{port}",
            argv=[sys.executable, "-m", "hubpulse_metrics"],
            env=env,
        )
        stack.enter_context(started_child(metrics, logs))
        wait_ready(metrics.url)
        started = time.perf_counter()
        try:
            measured = asyncio.run(
                _measure(
                    kafka.spec.url,
                    mongo.spec.url,
                    database,
                    metrics.url,
                    models,
                    paced,
                    spacing_ms / 1000,
                    timeout_s,
                    say,
                )
            )
        except RetryError:
            report["error"] = f"the metrics service did not store {models} scores within {timeout_s:g} s"
            return report
        report.update(measured)
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["ok"] = report["paced"]["missing"] == 0 and report["burst"]["missing"] == 0
    return report
