"""The README's screenshots, made from a running demo in a real Chromium (Playwright).

    .venv/bin/python tools/screenshots.py                      # starts `hubpulse up --demo`, shoots into docs/img
    .venv/bin/python tools/screenshots.py --url http://127.0.0.1:8000 --out /tmp/shots

Every page it visits is checked: a console error, an uncaught exception or a raw `null`, `undefined` or `NaN` in
the page's text fails the run (exit 1) and no file is written. tests/web/test_demo.py runs it into a temporary
folder against the suite's demo, so a page that breaks fails CI; it never rewrites the committed images.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from hubpulse.platform.layout import HUB_OFFSET, SERVICES, free_base_port

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = "hubpulse-demo/tiny-text-classifier"
PICK_THRESHOLD = 0.45
VIEWPORT = ViewportSize(width=1280, height=860)
# words a page shows when a script printed a missing value instead of handling it
RAW_VALUES = re.compile(r"\b(null|undefined|NaN)\b")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


@dataclass
class Demo:
    url: str  # the gateway: web app and API
    hub: str  # the replay Hub
    started: float  # time.monotonic() when `hubpulse up --demo` was started
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_demo(
    data_dir: Path, *, models: int = 2000, days: int = 30, day_seconds: float = 60.0, ready_within_s: float = 240
) -> Iterator[Demo]:
    """`hubpulse up --demo` on free ports, until the web app answers; Ctrl-C (SIGINT) stops it afterwards."""
    base = free_base_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBPULSE_")}
    argv = [
        sys.executable,
        "-m",
        "hubpulse",
        "up",
        "--demo",
        "--models",
        str(models),
        "--days",
        str(days),
        "--day-seconds",
        str(day_seconds),
        "--port",
        str(base),
        "--data-dir",
        str(data_dir),
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "up.log").open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    demo = Demo(f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + HUB_OFFSET}", time.monotonic(), process)
    try:
        deadline = demo.started + ready_within_s
        while not _ready(base):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (data_dir / "up.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the demo did not come up within {ready_within_s:g} s:\n{tail}")
            time.sleep(1)
        yield demo
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()


def _ready(base: int) -> bool:
    """Every service ready, as when `hubpulse up` says it is up (the gateway alone is ready before the scorer has
    made the catalog it serves)."""
    try:
        return all(
            httpx.get(f"http://127.0.0.1:{base + offset}/readyz", timeout=2).status_code == 200
            for _, offset in SERVICES.values()
        )
    except httpx.HTTPError:
        return False


def picks(url: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/v1/picks", params={"threshold": PICK_THRESHOLD}, timeout=10)
    items: list[dict[str, Any]] = answer.raise_for_status().json()["items"]
    return items


async def wait_for_picks(url: str, at_least: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while len(found := await asyncio.to_thread(picks, url)) < at_least:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(found)} AI picks after {timeout_s:g} s, wanted {at_least}")
        await asyncio.sleep(2)
    return found


class PageProblems(AssertionError):
    """Pages that logged console errors or showed raw missing values."""


def watch_console(page: Page) -> list[str]:
    """Console errors (a failed request included: the demo's pages have none to handle) and uncaught exceptions."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


async def raw_values(page: Page) -> list[str]:
    """Lines of the visible page that show a raw null, undefined or NaN."""
    text = await page.locator("body").inner_text()
    return [line.strip() for line in text.splitlines() if RAW_VALUES.search(line)]


@dataclass(frozen=True)
class Shot:
    name: str  # docs/img/<name>.png
    hash: str  # the page's route
    ready: Callable[[Page], Awaitable[None]]  # waits until the page shows what the picture is of
    full_page: bool = False
    pictured: bool = True


async def _search_ready(page: Page) -> None:
    # a fresh demo's first search may be empty (and cached for HUBPULSE_SEARCH_CACHE_TTL_S, 30 s): the page retries
    await expect(page.get_by_test_id("result").nth(9)).to_be_visible(timeout=60_000)
    await expect(page.get_by_test_id("ticker").locator("li").first).to_be_visible()


async def _model_ready(page: Page) -> None:
    for chart in ("chart-downloads", "chart-likes", "chart-probability"):
        await expect(page.get_by_test_id(chart).locator("canvas")).to_have_count(1)
    await expect(page.get_by_test_id("why").locator("li").first).to_be_visible()
    await expect(page.get_by_test_id("deployability").locator("*").first).to_be_visible()


async def _compare_ready(page: Page) -> None:
    for chart in ("compare-downloads", "compare-likes", "compare-probability"):
        await expect(page.get_by_test_id(chart).locator("canvas")).to_have_count(1)


async def _deploy_ready(page: Page) -> None:
    await page.get_by_test_id("deploy").click()
    await expect(page.get_by_test_id("deploy-dialog")).to_be_visible()


async def _shown(page: Page) -> None:
    await expect(page.locator("#view > *").first).to_be_visible()
    await expect(page.get_by_text("Loading…")).to_have_count(0)


def shots(top: list[str]) -> list[Shot]:
    """The README's pictures (its "What you will see" gives each one line), given the AI picks, best first."""
    return [
        Shot("search", "#/", _search_ready),
        Shot("model", "#/models/" + top[0], _model_ready, full_page=True),
        Shot("compare", "#/compare?ids=" + ",".join(top[:3]), _compare_ready, full_page=True),
        Shot("deploy", "#/models/" + DEMO_MODEL, _deploy_ready),
    ]


# Pages checked but not pictured: what an anonymous visitor can open.
CHECKED = ("#/login", "#/signup", "#/deployments", "#/watches", "#/alerts", "#/monitoring")


async def shoot(browser: Browser, url: str) -> dict[str, bytes]:
    """Visit every page: the pictures by name, once no page had a problem (else raises PageProblems)."""
    top = [p["model_id"] for p in await wait_for_picks(url, 2, 180)]  # compare needs two
    problems: list[str] = []
    pictures: dict[str, bytes] = {}
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1, color_scheme="light")
    try:
        for shot in [*shots(top), *(Shot(h.strip("#/"), h, _shown, pictured=False) for h in CHECKED)]:
            page = await context.new_page()
            page.set_default_timeout(30_000)
            errors = watch_console(page)
            await page.goto(f"{url}/{shot.hash}")
            await shot.ready(page)
            await page.wait_for_load_state("networkidle")
            problems += [f"{shot.hash}: {e}" for e in [*errors, *(f"shows {v!r}" for v in await raw_values(page))]]
            if shot.pictured:
                pictures[shot.name] = await page.screenshot(full_page=shot.full_page, animations="disabled")
            await page.close()
    finally:
        await context.close()
    if problems:
        raise PageProblems("\n".join(problems))
    return pictures


def write(pictures: dict[str, bytes], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for name, png in pictures.items():
        (out / f"{name}.png").write_bytes(png)
    return [out / f"{name}.png" for name in pictures]


async def _main(url: str) -> dict[str, bytes]:
    async with async_playwright() as pw:
        executable = shutil.which("chromium") or "/usr/bin/chromium"
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            return await shoot(browser, url)
        finally:
            await browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running web app (default: start `hubpulse up --demo` for the run)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder for the PNG files")
    args = parser.parse_args(argv)
    try:
        if args.url:
            pictures = asyncio.run(_main(args.url.rstrip("/")))
        else:
            with tempfile.TemporaryDirectory(prefix="hubpulse-shots-") as tmp, running_demo(Path(tmp)) as demo:
                pictures = asyncio.run(_main(demo.url))
    except (PageProblems, RuntimeError) as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    for path in write(pictures, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
