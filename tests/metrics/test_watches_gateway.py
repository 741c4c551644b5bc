"""A watch through the public API: the gateway forwards to metrics, scores arrive over the real broker, and the
alert reaches the signed webhook, the mailbox, the live socket and the feed, once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date, timedelta

import httpx
import websockets
from standardwebhooks import Webhook
from support.polling import eventually

from hubpulse_common.kafka import EventBus
from metrics.watch_stack import WatchStack, watch_stack
from metrics.watch_support import SignedReceiver, facts_known, features, new_task, score

__all__ = ["watch_stack"]

DAY = date(2026, 11, 20)


async def test_task_watch_through_the_gateway_pushes_live_and_stays_private(
    watch_stack: WatchStack, bus: EventBus
) -> None:
    alice = await watch_stack.sign_in(f"alice-{uuid.uuid4().hex[:6]}@example.com")
    bob = await watch_stack.sign_in(f"bob-{uuid.uuid4().hex[:6]}@example.com")
    task, model = new_task(), f"lab-{uuid.uuid4().hex[:6]}/climber"
    receiver = SignedReceiver()
    mails_before = len(watch_stack.smtp.mailbox.messages)
    async with httpx.AsyncClient(base_url=watch_stack.gateway, timeout=30) as client:
        created = await client.post(
            "/v1/watches",
            headers=alice,
            json={
                "kind": "task",
                "target": task,
                "conditions": ["threshold"],
                "channels": {"webhook": receiver.url, "email": "alice@example.com"},
            },
        )
        assert created.status_code == 201, created.text
        watch = created.json()
        bad = await client.post("/v1/watches", headers=alice, json={"kind": "task", "target": "x", "threshold": 7})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "validation_error"

        ws_url = watch_stack.gateway.replace("http", "ws", 1) + "/v1/live/alerts"
        async with websockets.connect(ws_url, additional_headers=alice) as socket:
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert snapshot["type"] == "snapshot"
            assert snapshot["items"] == []
            await bus.publish_many(
                [features(model, DAY - timedelta(days=1), pipeline_tag=task), features(model, DAY, pipeline_tag=task)]
            )
            await facts_known(watch_stack.mongo, watch_stack.database, [model])
            await bus.publish_many([score(model, DAY - timedelta(days=1), 0.2)])
            await bus.publish_many([score(model, DAY, 0.8)])
            pushed = json.loads(await asyncio.wait_for(socket.recv(), 30))
        assert pushed["type"] == "alert"
        assert pushed["unread"] == 1
        assert pushed["item"]["model_id"] == model
        assert pushed["item"]["url"] == f"https://hubpulse.example.com/models/{model}"

        async def delivered() -> bool:
            return len(receiver.received) == 1 and len(watch_stack.smtp.mailbox.messages) == mails_before + 1

        await eventually(delivered, 30)
        body, headers = receiver.received[0]
        assert Webhook(watch["webhook_secret"]).verify(body, headers)["data"]["alert_id"] == pushed["item"]["alert_id"]

        await bus.publish_many([score(model, DAY, 0.8)])  # a replay
        await asyncio.sleep(2.0)
        feed = (await client.get("/v1/alerts", headers=alice)).json()
        assert [a["alert_id"] for a in feed["items"]] == [pushed["item"]["alert_id"]]
        assert len(receiver.received) == 1

        assert (await client.get("/v1/alerts", headers=bob)).json()["items"] == []
        assert (await client.get("/v1/watches", headers=bob)).json() == []
        assert (await client.get(f"/v1/watches/{watch['watch_id']}", headers=bob)).status_code == 404
        assert (await client.post(f"/v1/alerts/{pushed['item']['alert_id']}/ack", headers=bob)).status_code == 404
        assert (await client.get("/v1/alerts")).status_code == 401

        mail = watch_stack.smtp.mailbox.messages[-1]
        unsubscribe = mail["List-Unsubscribe"].strip("<>").replace("https://hubpulse.example.com", watch_stack.gateway)
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # opening the link (or a mail scanner fetching it) only asks (RFC 8058)
        page = await client.get(unsubscribe)
        assert page.status_code == 200
        assert "Stop e-mails" in page.text
        own = f"/v1/watches/{watch['watch_id']}"
        assert (await client.get(own, headers=alice)).json()["channels"]["email"] is not None
        # a mail client's one-click unsubscribe: a form POST to the same address
        one_click = {"content-type": "application/x-www-form-urlencoded"}
        done = await client.post(unsubscribe, content=b"List-Unsubscribe=One-Click", headers=one_click)
        assert done.status_code == 200, done.text
        assert (await client.get(own, headers=alice)).json()["channels"]["email"] is None
        forged = unsubscribe.rsplit("=", 1)[0] + "=" + "0" * 64
        assert (await client.get(forged)).status_code == 403
        assert (await client.post(forged, content=b"List-Unsubscribe=One-Click", headers=one_click)).status_code == 403
    receiver.close()
