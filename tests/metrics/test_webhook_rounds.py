"""A watch's webhook against a real HTTP receiver that fails the way receivers do: a transient failure is tried
again in later rounds (the Standard Webhooks schedule), never sooner than its `Retry-After`; a 410 switches the
watch's webhook off, and the watch says so."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import Store
from pymongo.asynchronous.database import AsyncDatabase

from hubpulse_common.identity import Identity
from hubpulse_common.mongo import connect_mongo
from hubpulse_common.watch_schemas import Channels, WatchIn, WatchPatch
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches import repository
from hubpulse_metrics.watches.delivery import Deliverer, retry_after_seconds, webhook_client

WHO = Identity(user_id="u1", org_id="o1", role="member")


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, headers), the last one from then on."""

    script: list[tuple[int, dict[str, str]]]
    received: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def answer(self) -> tuple[int, dict[str, str]]:
        return self.script[min(len(self.received) - 1, len(self.script) - 1)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(script=[(200, {})])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.received.append({"id": self.headers["webhook-id"], "body": json.loads(body)})
            status, headers = state.answer()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()


@pytest.fixture
async def db(mongo: Store) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client = await connect_mongo(mongo.url)  # as the service connects (tz-aware)
    try:
        yield client[f"webhook_rounds_{uuid.uuid4().hex[:8]}"]
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _deliverer(db: AsyncDatabase[dict[str, Any]], **settings: Any) -> AsyncIterator[Deliverer]:
    """A deliverer with the service's own webhook client (its connections checked)."""
    defaults: dict[str, Any] = {
        "watch_webhook_allow_loopback": True,
        "watch_webhook_backoff_s": 0.01,
        "watch_delivery_poll_s": 0.05,
    }
    config = MetricsSettings(**(defaults | settings))
    async with webhook_client(config) as http:
        yield Deliverer(db, None, config, http)  # type: ignore[arg-type] (the webhook channel only: no events)


async def _alert(db: AsyncDatabase[dict[str, Any]], url: str) -> tuple[str, str]:
    """A watch with a webhook and one alert of it whose webhook is pending; (watch id, alert id)."""
    watch = await repository.create_watch(
        db, WHO, WatchIn(kind="model", target="acme/tiny", channels=Channels.model_validate({"webhook": url}))
    )
    alert_id = f"alt_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    alert = {
        "_id": alert_id,
        "watch_id": watch.watch_id,
        "user_id": WHO.user_id,
        "org_id": WHO.org_id,
        "scope": "user",
        "model_id": "acme/tiny",
        "condition": "threshold",
        "crossing_id": "c1",
        "probability": 0.7,
        "previous_probability": 0.3,
        "threshold": 0.45,
        "reason": "crossed",
        "url": "https://hubpulse.example/models/acme/tiny",
        "created_at": now,
        "score_at": now,
        "deliveries": {"webhook": "pending"},
    }
    assert await repository.insert_alerts(db, [alert])
    return watch.watch_id, alert_id


async def _doc(db: AsyncDatabase[dict[str, Any]], alert_id: str) -> dict[str, Any]:
    doc = await db[repository.ALERTS].find_one({"_id": alert_id})
    assert doc is not None
    return doc


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Sun, 06 Dec 2026 12:05:00 GMT", now) == 300.0
    assert retry_after_seconds("Sun, 06 Dec 2026 11:00:00 GMT", now) == 0.0  # a date gone by: at once
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


async def test_a_receiver_that_asks_for_two_minutes_is_tried_again_in_a_later_round_then(
    db: AsyncDatabase[dict[str, Any]], receiver: Receiver
) -> None:
    receiver.script = [(503, {"Retry-After": "120"}), (200, {})]
    async with _deliverer(db, watch_webhook_attempts=5) as deliverer:
        _, alert_id = await _alert(db, receiver.url)
        claimed = await repository.claim_pending(db, timedelta(seconds=120))
        assert claimed is not None
        assert claimed["_id"] == alert_id
        before = datetime.now(UTC)
        assert await deliverer.deliver(claimed) == {"webhook": "pending"}
        # one attempt, not five: the round does not wait two minutes, nor hammers a receiver that asked it not to
        assert len(receiver.received) == 1
        doc = await _doc(db, alert_id)
        assert doc["pending"] is True
        assert doc["retry_rounds"] == 1
        wait = (doc["lease_until"] - before).total_seconds()
        assert 119 <= wait <= 125, wait  # Retry-After (120 s), not the schedule's first 5 s
        assert await repository.claim_pending(db, timedelta(seconds=120)) is None  # not before then

        await db[repository.ALERTS].update_one({"_id": alert_id}, {"$set": {"lease_until": before}})  # two minutes on
        claimed = await repository.claim_pending(db, timedelta(seconds=120))
        assert claimed is not None
        assert await deliverer.deliver(claimed) == {"webhook": "sent"}
    assert [r["id"] for r in receiver.received] == [alert_id, alert_id]  # the same webhook-id: receivers dedupe
    assert (await _doc(db, alert_id))["pending"] is False
    tries = await repository.attempts(db, alert_id)
    assert [(t["status"], t["ok"]) for t in tries] == [(503, False), (200, True)]


async def test_a_webhook_down_for_good_is_given_up_after_the_last_round(
    db: AsyncDatabase[dict[str, Any]], receiver: Receiver
) -> None:
    receiver.script = [(500, {})]
    async with _deliverer(db, watch_webhook_attempts=2, watch_webhook_retry_s=[0.2, 0.3]) as deliverer:
        _, alert_id = await _alert(db, receiver.url)
        loop = asyncio.create_task(deliverer.run())
        try:
            for _ in range(200):
                if (await _doc(db, alert_id))["deliveries"]["webhook"] != "pending":
                    break
                await asyncio.sleep(0.05)
        finally:
            loop.cancel()
    doc = await _doc(db, alert_id)
    assert doc["deliveries"] == {"webhook": "failed"}
    assert doc["pending"] is False
    assert len(receiver.received) == 6  # three rounds (the first and the schedule's two) of two attempts


async def test_a_410_switches_the_watchs_webhook_off_until_its_owner_sets_one_again(
    db: AsyncDatabase[dict[str, Any]], receiver: Receiver
) -> None:
    receiver.script = [(410, {})]
    async with _deliverer(db) as deliverer:
        watch_id, _alert_id = await _alert(db, receiver.url)
        claimed = await repository.claim_pending(db, timedelta(seconds=120))
        assert claimed is not None
        assert await deliverer.deliver(claimed) == {"webhook": "failed"}
        assert len(receiver.received) == 1  # a 410 is not asked again

        watch = await repository.get_watch(db, WHO, watch_id)
        assert watch is not None
        assert watch.channels.webhook is None
        assert watch.webhook_disabled is not None
        assert (watch.webhook_disabled.url, "410" in watch.webhook_disabled.reason) == (receiver.url, True)

        # the watch's next alert does not call the removed endpoint
        second = {**claimed, "_id": "alt_second", "deliveries": {"webhook": "pending"}}
        assert await deliverer.deliver(second) == {"webhook": "off"}
        assert len(receiver.received) == 1

    patched = await repository.update_watch(
        db, WHO, watch_id, WatchPatch(channels=Channels.model_validate({"webhook": receiver.url}))
    )
    assert patched is not None
    assert patched.webhook_disabled is None
    assert patched.channels.webhook is not None


async def test_a_name_that_resolves_to_loopback_only_after_the_check_is_not_connected_to(
    db: AsyncDatabase[dict[str, Any]], receiver: Receiver
) -> None:
    """DNS rebinding: the name resolved to a public address when the watch was saved (the watch is stored as it
    was then), and resolves to loopback when the delivery connects. The connection is checked on the address it
    goes to, so nothing reaches the receiver."""
    receiver.script = [(200, {})]
    async with _deliverer(db, watch_webhook_allow_loopback=False) as deliverer:
        _, alert_id = await _alert(db, receiver.url.replace("127.0.0.1", "localhost"))
        claimed = await repository.claim_pending(db, timedelta(seconds=120))
        assert claimed is not None
        assert await deliverer.deliver(claimed) == {"webhook": "failed"}  # refused, not retried in later rounds
    assert receiver.received == []
    [attempt] = await repository.attempts(db, alert_id)
    assert attempt["ok"] is False
    assert "localhost is a loopback address (127.0.0.1)" in attempt["error"]
