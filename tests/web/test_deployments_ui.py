"""Deploy, call and monitor a model in a real Chromium, against real services: the replay Hub with the demo
models, auth, deployer (local target: a real model server process), the metrics service as its own process,
and the gateway serving the web app, over the session's PostgreSQL, Kafka and MongoDB."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from auth.conftest import serving
from conftest import Store, fresh_database
from deployer.conftest import DEMO_CACHE
from metrics.support import MetricsProcess
from playwright.async_api import ConsoleMessage, Page, expect

from hubpulse.bench.catalog_seed import MIGRATIONS, SCORER_VERSION_TABLE
from hubpulse.hub import create_app as create_hub_app
from hubpulse.hub.demo_models import DemoRepos
from hubpulse_auth.app import create_app as create_auth_app
from hubpulse_auth.settings import AuthSettings
from hubpulse_common import db
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_deployer.app import create_app as create_deployer_app
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings

pytestmark = pytest.mark.browser

MODEL = "hubpulse-demo/tiny-text-classifier"
LABEL = re.compile(r"^(NEGATIVE|POSITIVE)$")
DEPLOY_TIMEOUT_MS = 150_000  # a local model server imports torch: about a minute on a busy machine


@dataclass
class OpsStack:
    url: str  # the gateway: web app and API
    metrics: str


async def _add_demo_model_to_catalog(database_url: str) -> None:
    """The catalog row of the demo model, so its page (and its Deploy button) exists."""
    await db.migrate(database_url, MIGRATIONS, SCORER_VERSION_TABLE)  # the catalog tables, as seeding makes them
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO catalog_models (model_id, author, pipeline_tag, library_name, tags, snapshot_date, downloads,"
            " likes) VALUES ($1, 'hubpulse-demo', 'text-classification', 'transformers',"
            " ARRAY['transformers', 'text-classification'], current_date, 10, 1) ON CONFLICT DO NOTHING",
            MODEL,
        )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def ops_stack(
    postgres: Store, module_kafka: Store, mongo: Store, s3: Store, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OpsStack]:
    common: dict[str, Any] = {
        "kafka_bootstrap": module_kafka.url,
        "mongo_url": mongo.url,
        "s3_endpoint": s3.url,
        "environment": "test",
        "mongo_database": f"webops_{uuid.uuid4().hex[:8]}",
    }
    logs = tmp_path_factory.mktemp("webops")
    hub = create_hub_app(SyntheticHub(20, 3, seed=3))
    hub.state.demo_repos = DemoRepos(DEMO_CACHE)
    async with serving(hub) as hub_url:
        auth_settings = AuthSettings(database_url=await fresh_database(postgres, "webops_auth"), environment="test")
        async with serving(create_auth_app(auth_settings)) as auth_url:
            # every service verifies callers' tokens against the auth service's JWKS
            metrics_env = {"HUBPULSE_KAFKA_BOOTSTRAP": module_kafka.url, "HUBPULSE_MONGO_URL": mongo.url}
            metrics_env |= {"HUBPULSE_ENVIRONMENT": "test", "HUBPULSE_AUTH_URL": auth_url}
            metrics = MetricsProcess(metrics_env, logs / "metrics.log")
            await asyncio.to_thread(metrics.start)
            try:
                deployer_settings = DeployerSettings(
                    **common,
                    hf_endpoint=hub_url,
                    data_dir=tmp_path_factory.mktemp("webops-deployer"),
                    provision_timeout_s=120,
                    resource_poll_s=1.0,
                    auth_url=auth_url,
                )
                async with serving(create_deployer_app(deployer_settings)) as deployer_url:
                    gateway_db = await fresh_database(postgres, "webops_gateway")
                    await _add_demo_model_to_catalog(gateway_db)
                    gateway = GatewaySettings(
                        **common,
                        database_url=gateway_db,
                        auth_url=auth_url,
                        deployer_url=deployer_url,
                        metrics_url=metrics.url,
                        upstream_timeout_s=30,
                        api_rate_limit="100000/minute",
                    )
                    async with serving(create_gateway_app(gateway)) as gateway_url:
                        yield OpsStack(gateway_url, metrics.url)
            finally:
                await asyncio.to_thread(metrics.stop)


def _console_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions; a refused fetch's network line (401 before login, the 422 we
    provoke) is the browser reporting a status the page handles, not a script error."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


async def _log_in(page: Page, url: str) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery staple"
    signup = await page.request.post(url + "/v1/auth/signup", data={"email": email, "password": password})
    assert signup.status in (200, 201), await signup.text()
    await page.goto(url + "/#/login")
    await page.get_by_test_id("email").fill(email)
    await page.get_by_test_id("password").fill(password)
    await page.get_by_test_id("submit").click()
    await expect(page.get_by_test_id("account")).to_contain_text(email)


@pytest.mark.timeout(600)
async def test_deploy_predict_monitor_and_export(page: Page, ops_stack: OpsStack, tmp_path: Path) -> None:
    errors = _console_errors(page)
    await _log_in(page, ops_stack.url)

    # deploy from the model's page: target picker and autoscaling in the dialog
    await page.goto(ops_stack.url + "/#/models/" + MODEL)
    await expect(page.get_by_test_id("model-id")).to_contain_text(MODEL)
    await page.get_by_role("button", name="Deploy").click()
    dialog = page.get_by_test_id("deploy-dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_test_id("target").select_option("local")
    await dialog.get_by_label("Min replicas").fill("1")
    await dialog.get_by_label("Max replicas").fill("2")
    await dialog.get_by_test_id("deploy-submit").click()

    # the deployment's page follows it to running; the transition log shows each state
    await expect(page).to_have_url(re.compile(r"#/deployments/[0-9a-f]+$"))
    deployment_id = page.url.rsplit("/", 1)[1]
    status = page.get_by_test_id("deployment").locator("h1 [data-testid=status]")
    await expect(status).to_have_attribute("data-status", "running", timeout=DEPLOY_TIMEOUT_MS)
    log = page.get_by_test_id("transition")
    for state in ("pending", "provisioning", "running"):
        await expect(log.filter(has=page.locator(f'[data-status="{state}"]')).first).to_be_visible()
    await expect(page.get_by_test_id("deployment")).to_contain_text("1\u20132 replicas")
    await expect(page.get_by_test_id("deployment")).not_to_contain_text("null")  # running: no reason to show

    # the list shows it with its badge
    await page.goto(ops_stack.url + "/#/deployments")
    row = page.locator(f'[data-testid=deployment-row][data-id="{deployment_id}"]')
    await expect(row.get_by_test_id("status")).to_have_text("running")
    await row.get_by_role("link", name=deployment_id[:8]).click()

    # playground: one input, then a batch of lines; labels and latency; then a refused batch shows its error
    await page.get_by_label("Input text").fill("I love this movie")
    await page.get_by_test_id("predict-run").click()
    await expect(page.get_by_test_id("predict-output")).to_have_count(1)
    await expect(page.get_by_test_id("predict-output").get_by_test_id("label")).to_have_text(LABEL)
    await expect(page.get_by_test_id("predict-latency")).to_contain_text("ms")
    await page.get_by_label("Input text").fill("great film\nawful day\nthe model is fine")
    await page.get_by_test_id("predict-run").click()
    await expect(page.get_by_test_id("predict-output")).to_have_count(3)
    await page.get_by_label("Input text").fill("\n".join(f"line {i}" for i in range(40)))
    await page.get_by_test_id("predict-run").click()
    await expect(page.get_by_test_id("predict-error")).to_contain_text("422 bad_input")

    # monitoring: the live socket counts the three calls within a few seconds; usage table; CSV export
    await page.get_by_test_id("deployment").get_by_role("link", name="Monitor", exact=True).click()
    await expect(page.get_by_test_id("mon-deployment")).to_have_value(deployment_id)
    await expect(page.get_by_test_id("live-state")).to_have_text("live")
    await expect(page.get_by_test_id("live-requests")).to_have_text("3", timeout=10_000)
    await expect(page.get_by_test_id("chart-latency").locator("canvas")).to_have_count(1)
    await expect(page.get_by_test_id("chart-errors").locator("canvas")).to_have_count(1)
    # a live socket the metrics service refuses (422: an id too long) gets the error once and is closed (1008)
    refused = await page.evaluate(
        """() => new Promise(resolve => {
            const ws = new WebSocket(location.origin.replace("http", "ws") + "/v1/live/metrics?deployment_id="
                                     + "x".repeat(300));
            const messages = [];
            ws.onmessage = e => messages.push(JSON.parse(e.data));
            ws.onclose = e => resolve({code: e.code, messages});
            setTimeout(() => resolve({code: -1, messages}), 8000);
        })"""
    )
    assert refused["code"] == 1008, refused
    assert [m["error"]["code"] for m in refused["messages"]] == ["validation_error"], refused
    usage = page.locator(f'[data-testid=usage-row][data-key="{deployment_id}"]')
    await expect(usage.get_by_test_id("usage-requests")).to_have_text("3", timeout=10_000)

    async with page.expect_download() as download_info:
        await page.get_by_test_id("export-csv").click()
    download = await download_info.value
    saved = tmp_path / "usage.csv"
    await download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    mine = [r for r in rows if r["deployment"] == deployment_id]
    assert mine, rows
    assert int(mine[0]["requests"]) == 3, rows
    assert int(mine[0]["errors"]) == 1, rows

    assert errors == []


async def test_the_playground_compares_sentences_for_a_sentence_similarity_model(
    page: Page, ops_stack: OpsStack
) -> None:
    """A sentence-transformers repo (the demo's, laid out as all-MiniLM-L6-v2 is): the first line is the source
    sentence, each further line is compared with it, and the table shows one cosine per sentence."""
    errors = _console_errors(page)
    await _log_in(page, ops_stack.url)
    created = await page.evaluate(
        "async (model) => (await import('/static/js/api.js')).api('/v1/deployments', "
        "{ method: 'POST', body: { model_id: model, target: 'local' } })",
        "hubpulse-demo/tiny-sentence-embedder",
    )
    await page.goto(ops_stack.url + "/#/deployments/" + created["id"])
    status = page.get_by_test_id("deployment").locator("h1 [data-testid=status]")
    await expect(status).to_have_attribute("data-status", "running", timeout=DEPLOY_TIMEOUT_MS)
    await page.get_by_label("Source sentence").fill("paris is a city\nparis is a city\nI love this movie")
    await page.get_by_test_id("predict-run").click()
    rows = page.get_by_test_id("predict-output")
    await expect(rows).to_have_count(2)
    await expect(rows.first.get_by_test_id("similarity")).to_have_text("1.000")  # a sentence is itself
    await expect(rows.nth(1).get_by_test_id("similarity")).to_have_text(re.compile(r"^-?[01]\.\d{3}$"))
    await expect(page.get_by_test_id("predict-outputs")).to_contain_text("Similarity to “paris is a city”")
    await page.get_by_label("Source sentence").fill("only one line")
    await page.get_by_test_id("predict-run").click()
    await expect(page.get_by_test_id("predict-result")).to_contain_text("at least one sentence to compare")
    assert errors == []
