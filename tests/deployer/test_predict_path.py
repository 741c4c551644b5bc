"""The predict path under retries and load: answers kept only for the caller's Idempotency-Key, bound to the
inputs (audit M3), a retry never runs the model twice, and a model server that dies mid-load fails the
deployment with its reason while callers get 503s, not hangs. Calls without a key go from the gateway to the
model server itself (the data plane); keyed ones through the deployer, which keeps their answers.

Whether the model ran is read from the model server itself: `/healthz` counts the forward passes it ran."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deployer.conftest import DeployStack
from deployer.test_isolation import _login
from hubpulse_common.inference import model_server_token
from hubpulse_deployer.idempotency import IdempotencyCache, IdempotencyKeyReused, digest_of
from hubpulse_gateway import dataplane

MODEL = "hubpulse-demo/tiny-text-classifier"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def running(deploy_stack: DeployStack) -> AsyncIterator[dict[str, Any]]:
    """A running local deployment of MODEL, batching off (so one call is one forward pass)."""
    async with deploy_stack.client() as client:
        config = {"batching": {"max_batch_size": 1}}
        created = await client.post("/v1/deployments", json={"model_id": MODEL, "target": "local", "config": config})
        assert created.status_code == 202, created.text
        deployment_id = created.json()["id"]
        doc = await deploy_stack.wait_status(deployment_id, {"running", "failed"})
        assert doc["status"] == "running", doc
        yield doc
        await client.delete(f"/v1/deployments/{deployment_id}")


async def _passes(doc: dict[str, Any]) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        health = (await client.get(f"{doc['endpoint']['url']}/healthz")).json()
    batches: int = health["batching"]["batches"]
    return batches


async def test_a_key_replays_its_answer_and_refuses_other_inputs(
    deploy_stack: DeployStack, running: dict[str, Any]
) -> None:
    path = f"/v1/deployments/{running['id']}/predict"
    async with deploy_stack.client() as client:
        before = await _passes(running)
        first = await client.post(path, json={"inputs": "I love it"}, headers={"idempotency-key": "k-1"})
        again = await client.post(path, json={"inputs": "I love it"}, headers={"idempotency-key": "k-1"})
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert again.json() == first.json()
        assert await _passes(running) == before + 1  # the repeat was answered without the model
        # the same key with other inputs: refused, never the first call's answer
        other = await client.post(path, json={"inputs": ["awful", "bad"]}, headers={"idempotency-key": "k-1"})
        assert other.status_code == 422, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        # no key: nothing kept, every call runs the model
        before = await _passes(running)
        for _ in range(2):
            plain = await client.post(path, json={"inputs": "I love it"})
            assert plain.status_code == 200
        assert await _passes(running) == before + 2


async def test_concurrent_retries_of_one_key_run_the_model_once(
    deploy_stack: DeployStack, running: dict[str, Any]
) -> None:
    url = f"{deploy_stack.deployer}/deployments/{running['id']}/predict"
    headers = {**deploy_stack.headers, "idempotency-key": "k-concurrent"}
    before = await _passes(running)
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(*(client.post(url, json={"inputs": "same"}, headers=headers) for _ in range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert await _passes(running) == before + 1


async def test_ownership_is_checked_before_a_kept_answer(deploy_stack: DeployStack, running: dict[str, Any]) -> None:
    url = f"{deploy_stack.deployer}/deployments/{running['id']}/predict"
    stranger = {**await _login(deploy_stack, "predict-stranger@example.com"), "idempotency-key": "k-owner"}
    async with httpx.AsyncClient(timeout=60) as client:
        own = {**deploy_stack.headers, "idempotency-key": "k-owner"}
        assert (await client.post(url, json={"inputs": "mine"}, headers=own)).status_code == 200
        refused = await client.post(url, json={"inputs": "mine"}, headers=stranger)
    assert refused.status_code == 404, refused.text


async def test_kept_answers_are_bounded_in_bytes() -> None:
    cache = IdempotencyCache(max_bytes=4096, ttl_s=600)
    runs = 0

    async def run() -> bytes:
        nonlocal runs
        runs += 1
        return b"x" * 1000

    for i in range(10):
        await cache.answer(("d", "u", f"k{i}"), digest_of(b"body"), run)
    assert cache.bytes_used <= 4096
    assert runs == 10
    # the most recent answers are kept, the oldest went first
    assert (await cache.answer(("d", "u", "k9"), digest_of(b"body"), run)) == (b"x" * 1000, True)
    assert (await cache.answer(("d", "u", "k0"), digest_of(b"body"), run))[1] is False
    with pytest.raises(IdempotencyKeyReused):
        await cache.answer(("d", "u", "k9"), digest_of(b"other body"), run)

    async def huge() -> bytes:
        return b"y" * 10_000

    assert (await cache.answer(("d", "u", "big"), digest_of(b"body"), huge))[1] is False
    assert (await cache.answer(("d", "u", "big"), digest_of(b"body"), huge))[1] is False  # too big to keep
    assert cache.bytes_used <= 4096


def _requests(service: str, route: str, status: str | None = None) -> float:
    """Calls `service` answered on `route` (with `status`), from the RED metrics (one registry per test process)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(generate_latest().decode())
        for sample in family.samples
        if sample.name == "hubpulse_http_requests_total"
        and (sample.labels.get("service"), sample.labels.get("route")) == (service, route)
        and status in (None, sample.labels.get("status"))
    )


def _deployer_predicts() -> float:
    return _requests("deployer", "/deployments/{deployment_id}/predict")


def _gateway_predicts(status: str) -> float:
    """The gateway's count for the predict route's template (what the dashboards read)."""
    return _requests("gateway", "/v1/deployments/{deployment_id}/predict", status)


async def test_the_gateway_calls_the_model_server_itself(deploy_stack: DeployStack, running: dict[str, Any]) -> None:
    path = f"/v1/deployments/{running['id']}/predict"
    deployer_before, passes_before = _deployer_predicts(), await _passes(running)
    async with deploy_stack.client() as client:
        one = await client.post(path, json={"inputs": "direct and good"})
        many = await client.post(path, json={"inputs": ["direct", "and bad"]})
        assert one.status_code == many.status_code == 200, (one.text, many.text)
        assert _deployer_predicts() == deployer_before  # the deployer's predict route was not on the path
        assert await _passes(running) == passes_before + 2
        # answered as the deployer answers the same call
        url = f"{deploy_stack.deployer}/deployments/{running['id']}/predict"
        via_deployer = await client.post(url, json={"inputs": "direct and good"})
        assert one.json() == via_deployer.json()
        assert isinstance(one.json()["outputs"], dict)
        assert len(many.json()["outputs"]) == 2
        # a call with an Idempotency-Key goes through the deployer, which keeps its answer for the key
        keyed = await client.post(path, json={"inputs": "keyed"}, headers={"idempotency-key": "k-plane"})
        assert keyed.status_code == 200, keyed.text
        assert _deployer_predicts() == deployer_before + 2


async def test_predict_errors_keep_their_bodies_and_metrics(deploy_stack: DeployStack, running: dict[str, Any]) -> None:
    """The lean predict route (PredictMiddleware) answers errors as the FastAPI route did, counted under its
    template."""
    path = f"/v1/deployments/{running['id']}/predict"
    counted = {status: _gateway_predicts(status) for status in ("200", "400", "401", "404", "422")}
    async with httpx.AsyncClient(base_url=deploy_stack.gateway, timeout=30) as anonymous:
        refused = await anonymous.post(path, json={"inputs": "hello"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["x-request-id"]
    async with deploy_stack.client() as client:
        not_json = await client.post(path, content=b"{", headers={"content-type": "application/json"})
        bad = await client.post(path, json={"inputs": ""})
        missing = await client.post("/v1/deployments/no-such-deployment/predict", json={"inputs": "hello"})
        bad_id = await client.post("/v1/deployments/..x/predict", json={"inputs": "hello"})
        fine = await client.post(path, json={"inputs": "hello"})
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "bad_request")
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "bad_input")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (bad_id.status_code, bad_id.json()["error"]["code"]) == (422, "validation_error")
    assert fine.status_code == 200
    assert fine.headers["content-security-policy"]  # the outer middlewares still run
    assert _gateway_predicts("200") == counted["200"] + 1
    assert _gateway_predicts("400") == counted["400"] + 1
    assert _gateway_predicts("401") == counted["401"] + 1
    assert _gateway_predicts("404") == counted["404"] + 1
    assert _gateway_predicts("422") == counted["422"] + 2


async def test_a_model_server_takes_only_its_token(running: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=running["endpoint"]["url"], timeout=30) as client:
        anonymous = await client.post("/predict", json={"inputs": ["hello"]})
        forged = await client.post("/predict", json={"inputs": ["hello"]}, headers={"authorization": "Bearer x"})
    assert anonymous.status_code == forged.status_code == 401


async def test_model_server_death_under_load_gives_503s_and_fails_the_deployment(
    deploy_stack: DeployStack, running: dict[str, Any]
) -> None:
    path = f"/v1/deployments/{running['id']}/predict"
    statuses: list[int] = []

    async def caller(client: httpx.AsyncClient, n: int) -> None:
        for i in range(n):
            response = await client.post(path, json={"inputs": f"call {i} under load"})
            statuses.append(response.status_code)
            if response.status_code != 200:
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] in ("not_running", "unavailable")

    async with deploy_stack.client() as client:
        load = asyncio.gather(*(caller(client, 40) for _ in range(8)))
        while len(statuses) < 20:
            await asyncio.sleep(0.05)
        os.kill(running["endpoint"]["pid"], signal.SIGKILL)
        await asyncio.wait_for(load, 120)  # every call answered: none hangs
    assert 200 in statuses
    assert 503 in statuses
    assert set(statuses) <= {200, 503}
    failed = await deploy_stack.wait_status(running["id"], {"failed"}, timeout_s=10)
    assert failed["status"] == "failed"
    assert "exited with code -9" in failed["reason"]


def test_the_data_plane_derives_a_servers_token_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token is an HMAC of (deployment, address): computed on the first call to a server, not on every call."""
    derived: list[tuple[str, str]] = []

    def counting(secret: str, deployment_id: str, url: str) -> str:
        derived.append((deployment_id, url))
        return model_server_token(secret, deployment_id, url)

    monkeypatch.setattr(dataplane, "model_server_token", counting)
    servers = dataplane.ModelServers("s3cret", timeout_s=1, connect_timeout_s=1)
    doc = {"id": "d1", "target": "local", "endpoint": {"url": "http://127.0.0.1:1"}}
    expected = ("http://127.0.0.1:1", model_server_token("s3cret", "d1", "http://127.0.0.1:1"))
    assert servers.endpoint(doc) == servers.endpoint(doc) == expected
    moved = {**doc, "endpoint": {"url": "http://127.0.0.1:2"}}  # a new server: a new token
    assert servers.endpoint(moved) == ("http://127.0.0.1:2", model_server_token("s3cret", "d1", "http://127.0.0.1:2"))
    assert servers.endpoint({**doc, "target": "hf-space"}) is None
    assert derived == [("d1", "http://127.0.0.1:1"), ("d1", "http://127.0.0.1:2")]
