"""Watch a model, then see its alert arrive live, in a real Chromium: auth, the metrics service and the gateway
serving the web app, over the session's PostgreSQL, Kafka and MongoDB; the scores come through the real broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from auth.conftest import serving
from conftest import Store, fresh_database
from metrics.watch_support import score
from playwright.async_api import Page, expect

from hubpulse_auth.app import create_app as create_auth_app
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.kafka import EventBus
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_metrics.app import create_app as create_metrics_app
from hubpulse_metrics.settings import MetricsSettings
from web.test_deployments_ui import MODEL, _add_demo_model_to_catalog, _console_errors, _log_in

pytestmark = pytest.mark.browser

DAY = date(2026, 10, 1)


@contextmanager
def gone_receiver() -> Iterator[str]:
    """A webhook endpoint that answers every POST 410 Gone; its URL."""

    class Gone(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(410)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
async def watch_web(postgres: Store, metrics_kafka: Store, mongo: Store) -> AsyncIterator[str]:
    tag = uuid.uuid4().hex[:6]
    common: dict[str, Any] = {"kafka_bootstrap": metrics_kafka.url, "mongo_url": mongo.url, "environment": "test"}
    auth_db = await fresh_database(postgres, f"watch_web_auth_{tag}")
    gateway_db = await fresh_database(postgres, f"watch_web_gateway_{tag}")
    await _add_demo_model_to_catalog(gateway_db)
    async with serving(create_auth_app(AuthSettings(database_url=auth_db, environment="test"))) as auth_url:
        metrics = MetricsSettings(
            **common,
            auth_url=auth_url,
            mongo_database=f"watch_web_{tag}",
            consumer_group=f"metrics-{tag}",
            watch_webhook_allow_loopback=True,  # the test's receiver of the test-send
        )
        async with serving(create_metrics_app(metrics)) as metrics_url:
            gateway = GatewaySettings(
                **common,
                database_url=gateway_db,
                auth_url=auth_url,
                metrics_url=metrics_url,
                api_rate_limit="100000/minute",
                auth_ip_rate_limit="100000/minute",
            )
            async with serving(create_gateway_app(gateway)) as gateway_url:
                yield gateway_url


@pytest.mark.timeout(300)
async def test_watch_a_model_then_see_its_alert_live(page: Page, watch_web: str, metrics_kafka: Store) -> None:
    errors = _console_errors(page)
    await _log_in(page, watch_web)
    await page.goto(watch_web + "/#/models/" + MODEL)
    await expect(page.get_by_test_id("model-id")).to_have_text(MODEL)
    # no label text and no pick: what the page leaves out is not written as "null"
    await expect(page.get_by_role("main")).not_to_contain_text("null")
    await page.get_by_test_id("watch").click()
    await expect(page.get_by_test_id("watch-status")).to_contain_text("Watching")

    await page.goto(watch_web + "/#/alerts")
    await expect(page.get_by_test_id("live-state")).to_have_text("live")
    await expect(page.get_by_test_id("unread")).to_have_text("0")
    bus = EventBus(metrics_kafka.url, client_id="watch-web-tests")
    await bus.start()
    try:
        await bus.publish_many([score(MODEL, DAY - timedelta(days=1), 0.2)])
        await bus.publish_many([score(MODEL, DAY, 0.8)])
    finally:
        await bus.stop()
    # The default conditions: the 0.45 threshold and the picks (0.382) are both crossed, each alerting once.
    await expect(page.get_by_test_id("alert")).to_have_count(2, timeout=30_000)
    await expect(page.get_by_test_id("unread")).to_have_text("2")
    reason = "Downloads over 30 days are higher than 99.8 % of models today"
    await expect(page.get_by_test_id("alerts")).to_contain_text(reason)
    await page.get_by_test_id("ack").first.click()
    await expect(page.get_by_test_id("unread")).to_have_text("1")

    await page.goto(watch_web + "/#/watches")
    row = page.get_by_test_id("watch-row")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(f"model: {MODEL}")
    with gone_receiver() as hook:  # the watch's webhook now points at an endpoint its owner removed (410)
        watch_id = await row.get_attribute("data-id")
        await page.evaluate(
            "async ([id, url]) => (await import('/static/js/api.js')).api('/v1/watches/' + id, "
            "{ method: 'PATCH', body: { channels: { webhook: url } } })",
            [watch_id, hook],
        )
        await row.get_by_test_id("test-send").click()
        await expect(page.get_by_test_id("status")).to_have_text("Test alert sent.")
        for _ in range(50):  # the test alert is delivered in the background: the page shows what it came to
            await page.reload()
            if await page.get_by_test_id("webhook-disabled").count():
                break
            await page.wait_for_timeout(200)
    await expect(row.get_by_test_id("webhook-disabled")).to_have_text("webhook switched off")
    assert "410" in (await row.get_by_test_id("webhook-disabled").get_attribute("title") or "")
    await row.get_by_test_id("pause").click()
    await expect(row.get_by_test_id("paused")).to_be_visible()
    await row.get_by_test_id("delete").click()
    await expect(page.get_by_test_id("watch-row")).to_have_count(0)
    assert errors == []
