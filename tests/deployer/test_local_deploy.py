"""Through the gateway: deploy the demo text classifier to `local`, predict, update, roll back, fail; events on Kafka.

One deployment (one model server start, the slow part) is shared by the module, and its tests run in file order:
predict, then update/rollback (same revision: the server keeps serving), then killing its server comes last.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from deployer.conftest import DeployStack, read_topic
from hubpulse_common.inference import servable

MODEL = "hubpulse-demo/tiny-text-classifier"
pytestmark = pytest.mark.slow


async def _deploy(stack: DeployStack, model: str = MODEL, **extra: object) -> str:
    async with stack.client() as client:
        response = await client.post("/v1/deployments", json={"model_id": model, "target": "local", **extra})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "provisioning"
    assert body["task"]
    return str(body["id"])


@pytest.fixture(scope="module")
async def shared(deploy_stack: DeployStack) -> AsyncIterator[str]:
    """The id of one running local deployment of MODEL."""
    deployment_id = await _deploy(deploy_stack)
    running = await deploy_stack.wait_status(deployment_id, {"running", "failed"})
    assert running["status"] == "running", running
    yield deployment_id
    async with deploy_stack.client() as client:
        await client.delete(f"/v1/deployments/{deployment_id}")


async def test_local_deploy_predict_and_events(deploy_stack: DeployStack, shared: str) -> None:
    deployment_id = shared
    running = await deploy_stack.wait_status(deployment_id, {"running"})
    assert running["resources"]["memory_rss_bytes"] > 0

    async with deploy_stack.client() as client:
        one = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": "I love this movie"})
        assert one.status_code == 200, one.text
        output = one.json()["outputs"]
        assert output["label"] in ("NEGATIVE", "POSITIVE")
        assert 0.0 <= output["score"] <= 1.0

        texts = ["great film", "awful day", "the model is fine"]
        batch = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": texts})
        assert batch.status_code == 200, batch.text
        assert len(batch.json()["outputs"]) == len(texts)
        # real inference: the same input scores the same in a batch as alone
        alone = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": texts[0]})
        assert alone.json()["outputs"]["score"] == pytest.approx(batch.json()["outputs"][0]["score"], abs=1e-5)

        for bad in ({"inputs": 5}, {"inputs": []}, {"inputs": ["x"] * 1000}, {"nothing": 1}, {"inputs": [""]}):
            refused = await client.post(f"/v1/deployments/{deployment_id}/predict", json=bad)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["error"]["code"] == "bad_input"
        not_json = await client.post(
            f"/v1/deployments/{deployment_id}/predict", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400

        latencies = []
        for i in range(100):
            started = time.perf_counter()
            inputs = f"call {i} is good" if i % 4 else [f"call {i}", "is bad", "or fine"]
            answer = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": inputs})
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
    quantiles = statistics.quantiles(latencies, n=20)
    print(
        f"\npredict latency through the gateway, 100 calls: p50={statistics.median(latencies):.1f} ms "
        f"p95={quantiles[18]:.1f} ms"
    )

    transitions = await read_topic(
        deploy_stack.kafka, "deploy.events.v1", lambda v: v["deployment_id"] == deployment_id, want=3
    )
    assert [t["status"] for t in transitions] == ["pending", "provisioning", "running"]
    assert [t["sequence"] for t in transitions] == [0, 1, 2]
    inference = await read_topic(
        deploy_stack.kafka, "inference.events.v1", lambda v: v["deployment_id"] == deployment_id, want=109
    )
    assert len(inference) == 109
    ok = [e for e in inference if e["status"] == "ok"]
    assert len(ok) == 103
    assert {e["model_id"] for e in ok} == {MODEL}
    assert all(e["user_id"] and e["org_id"] and e["latency_ms"] > 0 for e in inference)
    assert sorted({e["http_status"] for e in inference}) == [200, 400, 422]
    assert max(e["inputs"] for e in ok) == 3


async def test_model_without_files_ends_failed_with_reason(deploy_stack: DeployStack) -> None:
    # a replayed Hub model: it has stats and a task, but no files to download
    # anonymously: the Hub answers 401 to a token it does not know, such as the gateway's
    async with httpx.AsyncClient() as client:
        models = (await client.get(f"{deploy_stack.hub}/api/models")).json()
    model = next(m["id"] for m in models if servable(m.get("pipeline_tag")))
    deployment_id = await _deploy(deploy_stack, model)
    failed = await deploy_stack.wait_status(deployment_id, {"failed", "running"})
    assert failed["status"] == "failed", failed
    assert "download" in failed["reason"]
    events = await read_topic(
        deploy_stack.kafka, "deploy.events.v1", lambda v: v["deployment_id"] == deployment_id, want=3
    )
    assert events[-1]["status"] == "failed"
    assert events[-1]["reason"] == failed["reason"]


async def test_unknown_model_and_bad_body_are_4xx(deploy_stack: DeployStack) -> None:
    async with deploy_stack.client() as client:
        unknown = await client.post("/v1/deployments", json={"model_id": "nobody/nothing"})
        assert unknown.status_code == 422
        assert unknown.json()["error"]["code"] == "unknown_model"
        bad = await client.post("/v1/deployments", json={"model_id": MODEL, "target": "moon"})
        assert bad.status_code == 422
        scaling = await client.post(
            "/v1/deployments",
            json={"model_id": MODEL, "config": {"autoscaling": {"min_replicas": 3, "max_replicas": 1}}},
        )
        assert scaling.status_code == 422
        missing = await client.get("/v1/deployments/doesnotexist")
        assert missing.status_code == 404
        anonymous = await client.get("/v1/deployments", headers={"authorization": ""})
        assert anonymous.status_code == 401


async def test_update_and_rollback(deploy_stack: DeployStack, shared: str) -> None:
    deployment_id = shared
    first = await deploy_stack.wait_status(deployment_id, {"running"})
    assert first["status"] == "running", first
    assert first["version"] == 1
    config = {"autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_concurrency": 8}}
    async with deploy_stack.client() as client:
        updated = await client.patch(f"/v1/deployments/{deployment_id}", json={"config": config})
        assert updated.status_code == 202, updated.text
        assert updated.json()["version"] == 2
        v2 = await deploy_stack.wait_status(deployment_id, {"running", "failed"})
        assert v2["status"] == "running"
        assert v2["config"]["autoscaling"]["max_replicas"] == 3
        rolled = await client.post(f"/v1/deployments/{deployment_id}/rollback", json={})
        assert rolled.status_code == 202, rolled.text
        v3 = await deploy_stack.wait_status(deployment_id, {"running", "failed"})
        assert v3["status"] == "running"
        assert v3["version"] == 3
        assert v3["config"]["autoscaling"]["max_replicas"] == 1
        assert v3["versions"][-1]["source"] == "rollback:1"
        answer = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": "still there"})
        assert answer.status_code == 200
        assert answer.json()["version"] == 3
        nowhere = await client.post(f"/v1/deployments/{deployment_id}/rollback", json={"version": 99})
        assert nowhere.status_code == 409
        # same revision, new config: the server that loaded the model keeps serving every version
        assert v3["endpoint"]["pid"] == first["endpoint"]["pid"]
    transitions = await read_topic(
        deploy_stack.kafka, "deploy.events.v1", lambda v: v["deployment_id"] == deployment_id, want=7
    )
    assert [(e["status"], e["version"]) for e in transitions][-4:] == [
        ("provisioning", 2),
        ("running", 2),
        ("provisioning", 3),
        ("running", 3),
    ]


async def test_model_server_death_fails_deployment_and_predict_is_503(deploy_stack: DeployStack, shared: str) -> None:
    deployment_id = shared
    running = await deploy_stack.wait_status(deployment_id, {"running"})
    assert running["status"] == "running", running
    os.kill(running["endpoint"]["pid"], signal.SIGKILL)
    failed = await deploy_stack.wait_status(deployment_id, {"failed"}, timeout_s=10)
    assert failed["status"] == "failed"
    assert "exited with code -9" in failed["reason"]
    async with deploy_stack.client() as client:
        down = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": "hello"})
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "not_running"
    async with deploy_stack.client() as client:
        deleted = await client.delete(f"/v1/deployments/{deployment_id}")
        assert deleted.status_code == 200
        assert deleted.json()["status"] == "deleted"
        listed = (await client.get("/v1/deployments")).json()["items"]
        assert deployment_id not in {d["id"] for d in listed}
