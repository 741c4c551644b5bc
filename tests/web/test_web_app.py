"""The web app in a real Chromium against a real gateway: search, filter, open a model, live ticker.

Logging in through the UI form is covered by test_deployments_ui.py, which runs the auth service too.
"""

from __future__ import annotations

import pytest
from gateway.gateway_process import EXPLAINED_ID, Gateway
from playwright.async_api import Page, expect

pytestmark = pytest.mark.browser


async def test_search_with_debounce_finds_a_model(page: Page, gateway: Gateway) -> None:
    await page.goto(gateway.url + "/")
    await expect(page.get_by_test_id("result").first).to_be_visible()
    await page.get_by_test_id("q").press_sequentially("explained-model", delay=20)
    rows = page.get_by_test_id("result")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-id", EXPLAINED_ID)


async def test_filter_and_sort(page: Page, gateway: Gateway) -> None:
    await page.goto(gateway.url + "/")
    await page.get_by_test_id("task").select_option("translation")
    await page.get_by_test_id("sort").select_option("downloads")
    rows = page.get_by_test_id("result")
    await expect(rows.first).to_be_visible()
    tasks = page.get_by_test_id("results").locator("td:nth-child(2)")
    await expect(tasks.filter(has_not_text="translation")).to_have_count(0)
    first_ids = await rows.evaluate_all("rs => rs.map(r => r.dataset.id)")
    api = await page.request.get(gateway.url + "/v1/models?task=translation&sort=downloads")
    assert first_ids == [m["model_id"] for m in (await api.json())["items"]]


async def test_open_a_model_shows_charts_why_and_hype(page: Page, gateway: Gateway) -> None:
    await page.goto(gateway.url + "/")
    await page.get_by_test_id("q").fill("explained-model")
    await page.get_by_test_id("results").get_by_role("link", name=EXPLAINED_ID).click()
    await expect(page.get_by_test_id("model-id")).to_have_text(EXPLAINED_ID)
    await expect(page.get_by_test_id("probability")).to_have_text("91.0%")
    await expect(page.get_by_test_id("hype")).to_contain_text("/ 100")
    await expect(page.get_by_test_id("is-pick")).to_be_visible()
    for chart in ("chart-downloads", "chart-likes", "chart-probability"):
        await expect(page.get_by_test_id(chart).locator("canvas")).to_have_count(1)
    why = page.get_by_test_id("why").locator("li")
    await expect(why).to_have_count(2)
    # a sentence a person reads, not the raw feature (kept in the tooltip and the API)
    await expect(why.first).to_contain_text("+420 likes this week")
    await expect(why.first).not_to_contain_text("likes_7d")
    await expect(why.first).to_have_attribute("title", "likes_7d = 420 (+1.30 log-odds)")
    await expect(page.get_by_test_id("label-text")).to_have_text(
        "trending: enters the Hub's trending top 10 within 7 days"
    )


async def test_compare_two_models_from_search(page: Page, gateway: Gateway) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(gateway.url + "/")
    boxes = page.get_by_test_id("compare-box")
    await expect(boxes.nth(1)).to_be_visible()
    await expect(page.get_by_test_id("compare-selected")).to_be_hidden()
    ids = await page.get_by_test_id("result").evaluate_all("rs => rs.slice(0, 2).map(r => r.dataset.id)")
    await boxes.nth(0).check()
    await boxes.nth(1).check()
    await page.get_by_test_id("compare-selected").click()
    legend = page.get_by_test_id("compare-legend").locator("li")
    await expect(legend).to_have_count(2)
    for model_id in ids:
        await expect(page.get_by_test_id("compare-legend")).to_contain_text(model_id)
    for chart in ("compare-downloads", "compare-likes", "compare-probability"):
        await expect(page.get_by_test_id(chart).locator("canvas")).to_have_count(1)
    text = await page.locator("main").inner_text()
    assert not any(word in text for word in ("null", "undefined", "NaN")), text
    assert errors == []


async def test_compare_from_a_model_page_starts_with_that_model(page: Page, gateway: Gateway) -> None:
    await page.goto(gateway.url + "/#/models/" + EXPLAINED_ID)
    await page.get_by_test_id("compare-link").click()
    await expect(page.get_by_test_id("compare-empty")).to_contain_text(f"compare with {EXPLAINED_ID}")


async def test_unknown_model_page_says_so(page: Page, gateway: Gateway) -> None:
    await page.goto(gateway.url + "/#/models/nobody/nothing")
    await expect(page.get_by_test_id("error")).to_contain_text("No model nobody/nothing")


async def test_live_ticker_shows_picks(page: Page, gateway: Gateway) -> None:
    await page.goto(gateway.url + "/")
    await expect(page.get_by_test_id("ticker-state")).to_have_text("live")
    await expect(page.get_by_test_id("ticker").locator("li").first).to_be_visible()


async def test_the_openapi_ui_renders_offline(page: Page, gateway: Gateway) -> None:
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(gateway.url) else None)
    await page.goto(gateway.url + "/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("hubpulse")
    await expect(page.locator(".opblock-summary-path").filter(has_text="/v1/models").first).to_be_visible()
    assert outside == [], outside  # nothing from a CDN: it works on a machine without internet
