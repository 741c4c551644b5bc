"""The first five minutes, as a new user lives them: `hubpulse up --demo` (its defaults, as `make up` runs it), then
the web app in a real Chromium. One demo runs for the whole module; its start-up is what these tests cost."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from web.test_deployments_ui import _log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
PICKS_WITHIN_S = 120
DEPLOY_TIMEOUT_MS = 150_000


def _tool() -> ModuleType:
    """tools/screenshots.py: the README's screenshot script, which also starts the demo and checks every page."""
    spec = importlib.util.spec_from_file_location("screenshots", REPO / "tools" / "screenshots.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


screenshots = _tool()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with screenshots.running_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


async def test_picks_on_the_ticker_within_two_minutes_of_start(page: Page, demo: Any) -> None:
    errors = screenshots.watch_console(page)
    await page.goto(demo.url + "/")
    left_s = PICKS_WITHIN_S - (time.monotonic() - demo.started)
    ticker = page.get_by_test_id("ticker").locator("li")
    await expect(ticker.first).to_be_visible(timeout=max(left_s, 1) * 1000)
    assert time.monotonic() - demo.started <= PICKS_WITHIN_S
    # opened as soon as the platform is up, the search may first find an empty catalog: it looks again by itself
    await expect(page.get_by_test_id("result").first).to_be_visible(timeout=60_000)
    # each pick names its model and links to its page
    links = await ticker.get_by_role("link").evaluate_all("as => as.map(a => [a.textContent, a.getAttribute('href')])")
    assert links
    assert all(href == "#/models/" + name for name, href in links), links
    first = ticker.first.get_by_role("link")
    model_id = await first.inner_text()
    await expect(first).to_have_attribute("href", "#/models/" + model_id)
    probability = await ticker.first.locator(".p").inner_text()
    assert float(probability.rstrip("%")) >= 45.0
    await first.click()
    await expect(page.get_by_test_id("model-id")).to_have_text(model_id)
    await expect(page.get_by_test_id("is-pick")).to_be_visible()
    assert errors == []


async def test_search_finds_the_demo_classifier(page: Page, demo: Any) -> None:
    await page.goto(demo.url + "/")
    await page.get_by_test_id("q").press_sequentially("tiny-text-classifier", delay=20)
    rows = page.get_by_test_id("result")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-id", screenshots.DEMO_MODEL)


async def test_a_model_the_deployer_cannot_serve_says_why_instead_of_deploy(page: Page, demo: Any) -> None:
    # a synthetic model: stats on the Hub, no weights (the demo's own models may be picks too)
    pick = next(p["model_id"] for p in screenshots.picks(demo.url) if not p["model_id"].startswith("hubpulse-demo/"))
    await page.goto(f"{demo.url}/#/models/{pick}")
    await expect(page.get_by_test_id("not-deployable")).to_contain_text("Not deployable here:")
    await expect(page.get_by_test_id("deploy")).to_have_count(0)
    answer = httpx.get(f"{demo.url}/v1/models/{pick}/deployability").json()
    await expect(page.get_by_test_id("not-deployable")).to_contain_text(answer["reason"])


async def test_deploy_from_its_page_reaches_running(page: Page, demo: Any) -> None:
    errors = screenshots.watch_console(page)
    await _log_in(page, demo.url)
    await page.goto(f"{demo.url}/#/models/{screenshots.DEMO_MODEL}")
    await expect(page.get_by_test_id("deployability")).to_have_attribute("data-deployable", "true")
    await page.get_by_test_id("deploy").click()
    await page.get_by_test_id("deploy-dialog").get_by_test_id("deploy-submit").click()
    await expect(page).to_have_url(re.compile(r"#/deployments/[0-9a-f]+$"))
    status = page.get_by_test_id("deployment").locator("h1 [data-testid=status]")
    await expect(status).to_have_attribute("data-status", "running", timeout=DEPLOY_TIMEOUT_MS)
    assert errors == []


async def test_no_page_shows_raw_values_or_console_errors_and_the_screenshots_are_made(
    browser: Browser, demo: Any, tmp_path: Path
) -> None:
    """The README's screenshot script, into a temporary folder: it visits every page and refuses a console error
    or a raw null, undefined or NaN; the committed pictures are the ones it makes."""
    pictures = await screenshots.shoot(browser, demo.url)
    written = screenshots.write(pictures, tmp_path)
    readme = (REPO / "README.md").read_text()
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (REPO / "docs" / "img" / path.name).exists(), f"docs/img/{path.name} is not committed"
        assert f"docs/img/{path.name}" in readme, f"the README does not show {path.name}"
