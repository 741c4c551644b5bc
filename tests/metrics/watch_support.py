"""Helpers of the watch tests: a local SMTP server, a webhook receiver
that keeps the raw body and headers (to check signatures), and the score/feature events of one model."""

from __future__ import annotations

import email
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from pymongo import AsyncMongoClient
from support.polling import eventually

from hubpulse.platform.stores import free_port
from hubpulse_common.events import Contribution, ModelFeatures, ModelFeaturesPacked, ModelScoresBatch


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on a free loopback port, in its own thread."""

    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()


class SignedReceiver:
    """Records raw webhook deliveries (body bytes and headers); answers the first `fail_first` with a 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                else:
                    receiver.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.received]

    def close(self) -> None:
        self._server.shutdown()


def new_task() -> str:
    return f"task-{uuid.uuid4().hex[:8]}"


def features(model_id: str, day: date, **fields: Any) -> ModelFeaturesPacked:
    """One model's day as the features close publishes it (a hub.features.v3 message of one row)."""
    values: dict[str, Any] = {
        "model_id": model_id,
        "snapshot_date": day,
        "features": {"log_downloads": 8.0},
        "downloads": 5000,
        "likes": 10,
        "author": model_id.split("/")[0],
        "pipeline_tag": "text-generation",
        "library_name": "transformers",
        "tags": ["transformers"],
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(fields)
    return ModelFeaturesPacked.of([ModelFeatures.model_validate(values)])


TOP_FEATURES = (
    Contribution(feature="day_pct_log_downloads", value=0.998, contribution=2.29),
    Contribution(feature="rank_change_7d", value=-4.0, contribution=0.71),
    Contribution(feature="age_days", value=30.0, contribution=-0.2),
)


def scores(model_ids: Sequence[str], day: date, probability: float) -> ModelScoresBatch:
    """One hub.scores.v2 message (what the scorer publishes): each model's score of `day`, explained."""
    top = [f.model_dump() for f in TOP_FEATURES]
    return ModelScoresBatch.model_validate(
        {
            "snapshot_date": day,
            "model_version": "v-test",
            "label": "trending",
            "horizon_days": 7,
            "threshold": 0.382,
            "model_id": list(model_ids),
            "probability": [probability] * len(model_ids),
            "top_features": [top] * len(model_ids),
            "occurred_at": datetime.now(UTC),
        }
    )


def score(model_id: str, day: date, probability: float) -> ModelScoresBatch:
    """A hub.scores.v2 message of one score."""
    return scores([model_id], day, probability)


async def facts_known(mongo_url: str, database: str, model_ids: list[str], timeout_s: float = 30) -> None:
    """Wait until the metrics service has stored these models' facts (from hub.features.v1). The features service
    publishes a day long before the scorer scores it; a score judged before its model's facts matches no task
    watch, and a new watch group (started at the latest offset) reads both topics at once when it first joins."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    models = client[database]["watch_models"]

    async def stored() -> bool:
        return await models.count_documents({"_id": {"$in": model_ids}}) == len(model_ids)

    try:
        await eventually(stored, timeout_s)
    finally:
        await client.close()
