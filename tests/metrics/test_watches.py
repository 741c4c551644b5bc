"""Watches end to end: real broker, real SecantusDB, the metrics service as its own process, a loopback webhook
receiver, a local SMTP server; scores and features go through Kafka as the scorer and features service send them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from deployer.conftest import read_topic
from issuer import TokenIssuer
from pymongo import AsyncMongoClient
from standardwebhooks import Webhook
from support.polling import eventually

from hubpulse_common.events import WatchAlertEvent
from hubpulse_common.kafka import EventBus
from metrics.conftest import watch_env
from metrics.support import MetricsProcess
from metrics.watch_support import SignedReceiver, SmtpServer, facts_known, features, new_task, score, scores

DAY = date(2026, 12, 1)


async def call(
    service: MetricsProcess, issuer: TokenIssuer, who: tuple[str, str], method: str, path: str, **kwargs: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        return await client.request(method, path, headers=issuer.headers(*who), **kwargs)


async def test_task_watch_alerts_once_per_crossing_on_every_channel(
    watch_metrics: MetricsProcess, issuer: TokenIssuer, smtp: SmtpServer, bus: EventBus, module_kafka: Any, mongo: Any
) -> None:
    alice = (f"alice-{uuid.uuid4().hex[:6]}", "org-a")
    task, model = new_task(), f"acme-{uuid.uuid4().hex[:6]}/rising-7b"
    receiver = SignedReceiver(fail_first=1)  # the first attempt fails: the retry delivers
    try:
        created = await call(
            watch_metrics,
            issuer,
            alice,
            "POST",
            "/v1/watches",
            json={
                "kind": "task",
                "target": task,
                "threshold": 0.45,
                "conditions": ["threshold"],
                "channels": {"webhook": receiver.url, "email": "alice@example.com"},
            },
        )
        assert created.status_code == 201, created.text
        watch = created.json()
        assert watch["webhook_secret"].startswith("whsec_")
        # Another task's model crossing the same threshold is none of this watch's business.
        await bus.publish_many(
            [
                features(model, DAY - timedelta(days=1), pipeline_tag=task),
                features(model, DAY, pipeline_tag=task),
                features(f"{model}-other", DAY, pipeline_tag="image-classification"),
            ]
        )
        await facts_known(mongo.url, watch_metrics.env["HUBPULSE_MONGO_DATABASE"], [model])
        await bus.publish_many([score(model, DAY - timedelta(days=1), 0.30), score(f"{model}-other", DAY, 0.2)])
        await bus.publish_many([score(model, DAY, 0.62), score(f"{model}-other", DAY + timedelta(days=1), 0.9)])

        async def delivered() -> bool:
            return len(receiver.received) >= 1 and len(smtp.mailbox.messages) >= 1

        await eventually(delivered, 30)
        body, headers = receiver.received[0]
        payload = Webhook(watch["webhook_secret"]).verify(body, headers)
        assert payload["type"] == "watch.alert"
        alert = payload["data"]
        assert alert["model_id"] == model
        assert alert["condition"] == "threshold"
        assert (alert["probability"], alert["previous_probability"], alert["threshold"]) == (0.62, 0.30, 0.45)
        assert "Downloads over 30 days are higher than 99.8 % of models today." in alert["reason"]
        assert "4 places on the trending list in a week" in alert["reason"]
        assert alert["url"] == f"https://hubpulse.example.com/models/{model}"
        assert headers["webhook-id"] == alert["alert_id"]
        assert receiver.attempts == 2
        tampered = body.replace(b"0.62", b"0.99")
        with pytest.raises(Exception, match="signature"):
            Webhook(watch["webhook_secret"]).verify(tampered, headers)

        mail = smtp.mailbox.messages[0]
        assert mail["To"] == "alice@example.com"
        assert model in mail["Subject"]
        parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
        assert set(parts) == {"text/plain", "text/html"}
        assert f"{watch_metrics_unsubscribe(watch['watch_id'])}" in parts["text/plain"]
        assert "Unsubscribe" in parts["text/html"]
        assert model in parts["text/html"]
        assert mail["List-Unsubscribe"].startswith("<https://hubpulse.example.com/v1/watches/")

        # Replays of the crossing score and a next day still above: no new alert, no new delivery.
        await bus.publish_many([score(model, DAY, 0.62), score(model, DAY + timedelta(days=1), 0.7)])
        await bus.publish_many([score(model, DAY, 0.62)])
        events = await read_topic(
            module_kafka.url, WatchAlertEvent.topic, lambda v: v["watch_id"] == watch["watch_id"], 2, 8
        )
        assert [e["alert_id"] for e in events] == [alert["alert_id"]]
        assert events[0]["user_id"] == alice[0]
        feed = (await call(watch_metrics, issuer, alice, "GET", "/v1/watch-alerts")).json()
        assert [i["alert_id"] for i in feed["items"]] == [alert["alert_id"]]
        assert feed["unread"] == 1
        assert feed["items"][0]["deliveries"] == {"webhook": "sent", "email": "sent", "kafka": "sent"}
        assert len(receiver.received) == 1
        assert len(smtp.mailbox.messages) == 1
        attempts = (
            await call(watch_metrics, issuer, alice, "GET", f"/v1/watch-alerts/{alert['alert_id']}/deliveries")
        ).json()
        webhook_attempts = [(a["attempt"], a["ok"], a["status"]) for a in attempts if a["channel"] == "webhook"]
        assert webhook_attempts == [(1, False, 503), (2, True, 204)]

        # Falling below and crossing again is a new crossing: a second alert.
        await bus.publish_many([score(model, DAY + timedelta(days=2), 0.2)])
        await bus.publish_many([score(model, DAY + timedelta(days=3), 0.5)])

        async def second() -> bool:
            return len(receiver.received) == 2

        await eventually(second, 20)
        acked = await call(watch_metrics, issuer, alice, "POST", f"/v1/watch-alerts/{alert['alert_id']}/ack")
        assert acked.status_code == 200
        assert acked.json()["read"] is True
        feed = (await call(watch_metrics, issuer, alice, "GET", "/v1/watch-alerts")).json()
        assert len(feed["items"]) == 2
        assert feed["unread"] == 1
    finally:
        receiver.close()


def watch_metrics_unsubscribe(watch_id: str) -> str:
    return f"https://hubpulse.example.com/v1/watches/{watch_id}/unsubscribe?token="


async def test_users_never_see_each_others_watches_or_alerts(
    watch_metrics: MetricsProcess, issuer: TokenIssuer, bus: EventBus
) -> None:
    alice, bob = (f"alice-{uuid.uuid4().hex[:6]}", "org-a"), (f"bob-{uuid.uuid4().hex[:6]}", "org-a")
    mallory = (f"mallory-{uuid.uuid4().hex[:6]}", "org-m")
    model = f"solo-{uuid.uuid4().hex[:6]}/model"
    mine = (
        await call(
            watch_metrics,
            issuer,
            alice,
            "POST",
            "/v1/watches",
            json={"kind": "model", "target": model, "conditions": ["threshold"]},
        )
    ).json()
    shared = (
        await call(
            watch_metrics,
            issuer,
            alice,
            "POST",
            "/v1/watches",
            json={"kind": "author", "target": model.split("/")[0], "scope": "org", "conditions": ["threshold"]},
        )
    ).json()
    sent = await call(watch_metrics, issuer, alice, "POST", f"/v1/watches/{mine['watch_id']}/test")
    assert sent.status_code == 202, sent.text
    await bus.publish_many([features(model, DAY), score(model, DAY - timedelta(days=1), 0.1)])
    await asyncio.sleep(0.5)
    await bus.publish_many([score(model, DAY, 0.9)])

    async def alerted() -> bool:
        feed = (await call(watch_metrics, issuer, alice, "GET", "/v1/watch-alerts")).json()
        return len(feed["items"]) == 3  # the test alert, and the crossing under each watch

    await eventually(alerted, 20)
    alice_alerts = (await call(watch_metrics, issuer, alice, "GET", "/v1/watch-alerts")).json()["items"]
    private = [a for a in alice_alerts if a["watch_id"] == mine["watch_id"]]

    # Bob (same organisation) sees the shared watch and its alert, never Alice's own or its secret.
    bob_watches = (await call(watch_metrics, issuer, bob, "GET", "/v1/watches")).json()
    assert [w["watch_id"] for w in bob_watches] == [shared["watch_id"]]
    assert bob_watches[0]["webhook_secret"] is None
    bob_feed = (await call(watch_metrics, issuer, bob, "GET", "/v1/watch-alerts")).json()
    assert {a["watch_id"] for a in bob_feed["items"]} == {shared["watch_id"]}
    assert (await call(watch_metrics, issuer, bob, "GET", f"/v1/watches/{mine['watch_id']}")).status_code == 404
    patched = await call(
        watch_metrics, issuer, bob, "PATCH", f"/v1/watches/{shared['watch_id']}", json={"paused": True}
    )
    assert patched.status_code == 403

    # Mallory (another organisation) sees nothing and can touch nothing.
    assert (await call(watch_metrics, issuer, mallory, "GET", "/v1/watches")).json() == []
    assert (await call(watch_metrics, issuer, mallory, "GET", "/v1/watch-alerts")).json()["items"] == []
    for method, path in [
        ("GET", f"/v1/watches/{shared['watch_id']}"),
        ("DELETE", f"/v1/watches/{mine['watch_id']}"),
        ("POST", f"/v1/watch-alerts/{private[0]['alert_id']}/ack"),
        ("GET", f"/v1/watch-alerts/{private[0]['alert_id']}/deliveries"),
    ]:
        assert (await call(watch_metrics, issuer, mallory, method, path)).status_code == 404, (method, path)
    async with httpx.AsyncClient(base_url=watch_metrics.url) as anonymous:
        assert (await anonymous.get("/v1/watches")).status_code == 401


async def test_bad_watches_are_refused_with_a_clear_error(
    metrics_env: dict[str, str], issuer: TokenIssuer, smtp: SmtpServer, start_metrics: Any
) -> None:
    env = {**watch_env(metrics_env, smtp), "HUBPULSE_WATCH_WEBHOOK_ALLOW_LOOPBACK": "false"}
    service = start_metrics(**env)
    who = ("carol", "org-c")
    cases = [
        ({"kind": "task", "target": "x", "channels": {"webhook": "http://127.0.0.1:9/hook"}}, "webhook_refused"),
        ({"kind": "task", "target": "x", "channels": {"webhook": "http://10.1.2.3/hook"}}, "webhook_refused"),
        ({"kind": "search", "target": "colour=blue"}, "bad_search"),
        ({"kind": "search", "target": "min_downloads=lots"}, "bad_search"),
        ({"kind": "planet", "target": "x"}, "validation_error"),
        ({"kind": "task", "target": "x", "threshold": 2}, "validation_error"),
    ]
    for body, code in cases:
        response = await call(service, issuer, who, "POST", "/v1/watches", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    ok = await call(service, issuer, who, "POST", "/v1/watches", json={"kind": "search", "target": "q=llama&task=t"})
    assert ok.status_code == 201


async def test_digest_holds_alerts_and_sends_one_message_per_channel(
    metrics_env: dict[str, str], issuer: TokenIssuer, smtp: SmtpServer, start_metrics: Any, bus: EventBus, mongo: Any
) -> None:
    service = start_metrics(**{**watch_env(metrics_env, smtp), "HUBPULSE_WATCH_DIGEST_INTERVAL_S": "3"})
    who = (f"dana-{uuid.uuid4().hex[:6]}", "org-d")
    task, models = new_task(), [f"digest-{uuid.uuid4().hex[:6]}/m{i}" for i in range(2)]
    receiver = SignedReceiver()
    mails_before = len(smtp.mailbox.messages)
    try:
        body = {
            "kind": "task",
            "target": task,
            "conditions": ["threshold"],
            "channels": {"webhook": receiver.url, "email": "dana@example.com", "digest": True},
        }
        watch = (await call(service, issuer, who, "POST", "/v1/watches", json=body)).json()
        await bus.publish_many([features(m, DAY, pipeline_tag=task) for m in models])
        await facts_known(mongo.url, service.env["HUBPULSE_MONGO_DATABASE"], models)
        await bus.publish(scores(models, DAY - timedelta(days=1), 0.1))  # one message, as the scorer sends a batch
        await bus.publish(scores(models, DAY, 0.9))

        async def held() -> bool:
            feed = (await call(service, issuer, who, "GET", "/v1/watch-alerts")).json()
            return len(feed["items"]) == 2

        await eventually(held, 20)
        assert receiver.received == []  # held for the digest, not sent one by one

        async def digested() -> bool:
            return len(receiver.received) == 1 and len(smtp.mailbox.messages) == mails_before + 1

        await eventually(digested, 20)
        body_bytes, headers = receiver.received[0]
        digest = Webhook(watch["webhook_secret"]).verify(body_bytes, headers)
        assert digest["type"] == "watch.digest"
        assert sorted(a["model_id"] for a in digest["data"]["alerts"]) == sorted(models)
        mail = smtp.mailbox.messages[-1]
        assert mail["Subject"] == "hubpulse: 2 alerts from your watches"

        async def recorded() -> bool:
            # a channel's outcome is recorded once its message has gone: the mail can be in before its "sent" is
            feed = (await call(service, issuer, who, "GET", "/v1/watch-alerts")).json()
            return {(i["deliveries"]["webhook"], i["deliveries"]["email"]) for i in feed["items"]} == {("sent", "sent")}

        await eventually(recorded, 10)
        await asyncio.sleep(4)  # another digest round: nothing held, nothing sent again
        assert len(receiver.received) == 1
    finally:
        receiver.close()


async def test_a_new_metrics_group_watches_from_now_on(
    metrics_env: dict[str, str], start_metrics: Any, bus: EventBus, mongo: Any
) -> None:
    """#20: a new deployment's watch consumers start at the latest offset, not at the whole scores backlog
    (where a group resumes after a restart: tests/common/test_consumer_start.py)."""
    model = f"since-{uuid.uuid4().hex[:6]}/m"
    await bus.publish_many([score(f"{model}-backlog", DAY, 0.9), features(f"{model}-backlog", DAY)])
    service = start_metrics()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url)
    scores = client[service.env["HUBPULSE_MONGO_DATABASE"]]["watch_scores"]

    async def stored() -> set[str]:
        return {d["model_id"] async for d in scores.find({"model_id": {"$regex": f"^{model}"}})}

    async def now_stored() -> bool:
        return f"{model}-now" in await stored()

    try:
        await bus.publish_many([score(f"{model}-now", DAY, 0.9)])
        await eventually(now_stored, 30)
        assert await stored() == {f"{model}-now"}  # never the backlog
    finally:
        await client.close()
