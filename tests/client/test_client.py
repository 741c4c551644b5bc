"""hubpulse-client against a running platform (gateway + services on the test stores), its models against the
gateway's OpenAPI document, and its retries against a loopback server that answers 429/503."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from metrics.watch_support import SignedReceiver

from client.conftest import Platform
from hubpulse_client import AsyncHubpulseClient, HubpulseClient, HubpulseError, RetryableError
from hubpulse_client import _calls as calls
from hubpulse_client.errors import DeploymentFailed
from hubpulse_client.models import TYPED

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
MODEL = "hubpulse-demo/tiny-text-classifier"


@pytest.mark.parametrize("model", TYPED, ids=lambda m: m.openapi_name)
def test_typed_answers_match_the_openapi_document(model: Any) -> None:
    schema = json.loads(OPENAPI.read_text())["components"]["schemas"][model.openapi_name]
    assert set(model.model_fields) == set(schema["properties"]), model.openapi_name
    required_here = {name for name, field in model.model_fields.items() if field.is_required()}
    assert set(schema.get("required", [])) <= required_here, model.openapi_name


class Flaky:
    """Answers `script` (status, headers) in turn, then 200 {"threshold": 0.5, "items": []}."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.times: list[float] = []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                flaky.times.append(time.monotonic())
                status, headers = flaky.script.pop(0) if flaky.script else (200, {})
                body = (
                    {"threshold": 0.5, "items": []}
                    if status == 200
                    else {"error": {"code": "rate_limited", "message": "slow down"}}
                )
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def log_message(self, *args: object) -> None:
                return None

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def flaky() -> Iterator[Any]:
    servers: list[Flaky] = []

    def make(script: list[tuple[int, dict[str, str]]]) -> Flaky:
        servers.append(Flaky(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_429_and_503_are_retried_honouring_retry_after(flaky: Any) -> None:
    server = flaky([(429, {"retry-after": "0.6"}), (503, {})])
    with HubpulseClient(server.url, api_key="hpk_x") as client:
        assert client.picks().threshold == 0.5
    assert len(server.times) == 3
    assert server.times[1] - server.times[0] >= 0.6  # as Retry-After said
    assert server.times[2] - server.times[1] >= 0.5  # backoff, no Retry-After


def test_retries_run_out_with_the_apis_error_code(flaky: Any) -> None:
    server = flaky([(429, {"retry-after": "0"})] * 5)
    with HubpulseClient(server.url, max_retries=2) as client, pytest.raises(RetryableError) as caught:
        client.picks()
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")
    assert len(server.times) == 3


async def test_client_drives_search_a_watch_a_deployment_and_a_prediction(platform: Platform) -> None:
    receiver = SignedReceiver()
    try:
        async with AsyncHubpulseClient(platform.gateway, token=platform.token) as hp:
            found = [m async for m in hp.search_models(sort="downloads", limit=50)]
            assert len(found) == platform.catalog_models  # every page
            assert len({m.model_id for m in found}) == platform.catalog_models
            detail = await hp.get_model(found[0].model_id)
            assert detail.model_id == found[0].model_id
            assert detail.downloads == found[0].downloads
            with pytest.raises(HubpulseError) as missing:
                await hp.get_model("no-such/model")
            assert (missing.value.status, missing.value.code) == (404, "model_not_found")

            watch = await hp.create_watch("model", found[0].model_id, threshold=0.5, channels={"webhook": receiver.url})
            assert [w.watch_id for w in await hp.watches()] == [watch.watch_id]
            paused = await hp.update_watch(watch.watch_id, paused=True)
            assert paused.paused is True
            sent = await hp.test_watch(watch.watch_id)
            alerts = [a async for a in hp.alerts(watch.watch_id)]
            assert [a.alert_id for a in alerts] == [sent.alert_id]
            assert await hp.unread_alerts() == 1
            await hp.ack(sent.alert_id)
            assert await hp.unread_alerts() == 0
            with pytest.raises(HubpulseError) as bad:
                await hp.create_watch("planet", "x")
            assert (bad.value.status, bad.value.code) == (422, "validation_error")

            deployment = await hp.deploy(MODEL, target="local")
            running = await hp.wait_until_running(deployment["id"], timeout_s=180, poll_s=0.5)
            assert running["status"] == "running"
            one = await hp.predict(deployment["id"], "I love this movie")
            assert one["label"] in ("NEGATIVE", "POSITIVE")
            batch = await hp.predict_batch(deployment["id"], ["great film", "awful day"])
            assert len(batch) == 2
            with pytest.raises(HubpulseError) as pair:  # a sentence-similarity pair, to a text classifier
                await hp.predict(deployment["id"], {"source_sentence": "a", "sentences": ["b"]})
            assert (pair.value.status, pair.value.code) == (422, "bad_input")
            assert "must be a string for text-classification" in pair.value.message
            csv_text = await hp.usage_export(format="csv", group_by="deployment")
            assert csv_text.splitlines()[0].startswith("deployment,requests")
            await hp.delete_deployment(deployment["id"])

        def blocking() -> list[str]:
            with HubpulseClient(platform.gateway, token=platform.token) as hp:
                return [m.model_id for m in hp.search_models(sort="downloads", limit=40)]

        assert await asyncio.to_thread(blocking) == [m.model_id for m in found]
        for _ in range(100):  # the test alert's webhook, signed like every alert's
            if receiver.received:
                break
            await asyncio.sleep(0.1)
        assert receiver.bodies()[0]["data"]["alert_id"] == sent.alert_id
    finally:
        receiver.close()


async def run_cli(platform: Platform, *args: str) -> tuple[int, str, str]:
    cli = str(Path(sys.executable).parent / "hubpulse-client")
    proc = await asyncio.create_subprocess_exec(
        cli,
        "--url",
        platform.gateway,
        "--token",
        platform.token,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_searches_watches_and_says_errors_in_one_line(platform: Platform) -> None:
    code, out, _ = await run_cli(platform, "search", "--sort", "downloads", "--limit", "3")
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert len(lines) == 3
    assert all(len(parts) == 3 for parts in lines)
    code, out, _ = await run_cli(platform, "watch", "task", "text-generation", "--threshold", "0.6")
    assert code == 0
    assert json.loads(out)["threshold"] == 0.6
    code, _, err = await run_cli(platform, "watch", "planet", "x")
    assert code == 1
    assert err.startswith("error: validation_error:")
    assert "Traceback" not in err
    code, _, err = await run_cli(platform, "predict", "dep-1", "one", "two", "--compare", "three")
    assert code == 2
    assert "--compare compares one source sentence" in err
    assert "Traceback" not in err


def test_waiting_for_a_deployment_stops_at_a_dead_state_or_the_deadline() -> None:
    later, past = time.monotonic() + 60, time.monotonic() - 1
    assert calls.running({"id": "d1", "status": "running"}, past, 5) is True
    assert calls.running({"id": "d1", "status": "pending"}, later, 5) is False
    with pytest.raises(DeploymentFailed, match="deployment d1 is failed: out of memory") as dead:
        calls.running({"id": "d1", "status": "failed", "reason": "out of memory"}, later, 5)
    assert dead.value.code == "deployment_failed"
    with pytest.raises(DeploymentFailed, match=r"deployment d1 not running after 2\.5 s") as late:
        calls.running({"id": "d1", "status": "pending"}, past, 2.5)
    assert late.value.code == "timeout"
