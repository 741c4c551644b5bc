"""The walk behind a mirror (HF_ENDPOINT), and a trending answer that is not JSON.

A mirror passes the Hub's `Link` headers through unchanged, so they name huggingface.co (hf-mirror.com, recorded in
padeoe/hf-mirror-site#65; huggingface_hub PR #3646 corrects its own listings for it). The server here answers as
such a mirror does: a real HTTP server on a free port, the cursor link pointing at huggingface.co.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from hubpulse_common.settings import load_settings
from hubpulse_ingestor.hub import HubPages, MalformedPage, Page
from hubpulse_ingestor.settings import IngestorSettings

CURSOR = "eyIkb3IiOlt7ImNyZWF0ZWRBdCI6IjIwMjQtMDEtMDFUMDA6MDA6MDAuMDAwWiJ9XX0="
MODEL = {"_id": "6620f0a1b2c3d4e5f6a7b8c9", "id": "acme/tiny-bert", "downloads": 3, "likes": 1, "private": False}


class _Mirror(BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        query = parse_qs(urlsplit(self.path).query)
        if query.get("sort") == ["trendingScore"]:
            self._answer(b"<html><body>Bad gateway</body></html>", "text/html")
        elif "cursor" not in query:
            link = f'<https://huggingface.co/api/models?sort=createdAt&limit=1&cursor={CURSOR}>; rel="next"'
            self._answer(orjson.dumps([MODEL]), "application/json", link)
        else:
            self._answer(b"[]", "application/json")

    def _answer(self, body: bytes, kind: str, link: str | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if link is not None:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Mirror", (_Mirror,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub(mirror: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> HubPages:
    monkeypatch.setenv("HF_ENDPOINT", mirror[0])
    monkeypatch.setenv("HUBPULSE_PAGE_ATTEMPTS", "2")
    monkeypatch.setenv("HUBPULSE_PAGE_RETRY_WAIT_S", "0.01")
    return HubPages(load_settings(IngestorSettings))


def test_the_walk_stays_on_the_mirror(hub: HubPages, mirror: tuple[str, list[str]]) -> None:
    endpoint, seen = mirror
    first = hub.fetch(hub.first_url())
    assert isinstance(first, Page)
    assert [m["id"] for m in first.items] == ["acme/tiny-bert"]
    assert first.next_url == f"{endpoint}/api/models?sort=createdAt&limit=1&cursor={CURSOR}"

    second = hub.fetch(first.next_url)
    assert isinstance(second, Page)
    assert (second.items, second.next_url) == ([], None)
    assert parse_qs(urlsplit(seen[-1]).query)["cursor"] == [CURSOR]  # the mirror answered the cursor itself


def test_a_cursor_checkpointed_on_huggingface_co_resumes_on_the_mirror(
    hub: HubPages, mirror: tuple[str, list[str]]
) -> None:
    _, seen = mirror
    page = hub.fetch(f"https://huggingface.co/api/models?sort=createdAt&limit=1&cursor={CURSOR}")
    assert isinstance(page, Page)
    assert page.url.startswith(hub.endpoint)
    assert len(seen) == 1


def test_a_trending_answer_that_is_not_json_is_retried_then_reported(
    hub: HubPages, mirror: tuple[str, list[str]]
) -> None:
    _, seen = mirror
    with pytest.raises(MalformedPage, match="trending page is not JSON"):
        hub.trending(10)
    assert len(seen) == 2  # HUBPULSE_PAGE_ATTEMPTS: the cycle then walks on without ranks (cycle._trending_ranks)
