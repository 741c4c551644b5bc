"""Whose Hub token reads a user's model (audit M7, issue 14), and what a local deployment downloads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth.conftest import serving
from fastapi import FastAPI, Request
from huggingface_hub import HfApi

from deployer.conftest import PLATFORM_TOKEN, PRIVATE_MODEL, USER_TOKEN, DeployStack
from hubpulse.platform.stores import free_port
from hubpulse_common.inference import servable
from hubpulse_deployer.app import create_app as create_deployer_app
from hubpulse_deployer.runtime.fetch import fetch
from hubpulse_deployer.schemas import DeploymentConfig
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_deployer.targets.base import ProvisionError, Spec
from hubpulse_deployer.targets.hf_space import HfSpaceTarget

MODEL = "hubpulse-demo/tiny-text-classifier"
pytestmark = pytest.mark.slow


async def test_without_a_configured_token_none_is_sent(
    deploy_stack: DeployStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the test Hub answers 401 to a token it does not know, as huggingface.co does even on public repos
    for name in ("HF_TOKEN", "HUBPULSE_HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = DeployerSettings(hf_endpoint=deploy_stack.hub)
    folder = await asyncio.to_thread(
        fetch,
        MODEL,
        "main",
        "text-classification",
        endpoint=settings.hf_endpoint,
        token=settings.hub_token(),
        cache_dir=tmp_path,
    )
    # only what the ONNX runtime loads: not the README, nothing else
    files = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())
    assert files == ["config.json", "onnx/model.onnx", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]


async def test_private_model_needs_the_users_own_token(deploy_stack: DeployStack) -> None:
    async with deploy_stack.client() as client:
        # the platform's token can read it, but may not deploy it for someone else
        refused = await client.post("/v1/deployments", json={"model_id": PRIVATE_MODEL})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "model_not_public"
        assert "HF_TOKEN" in refused.json()["error"]["message"]
        wrong = await client.post(
            "/v1/deployments", json={"model_id": PRIVATE_MODEL, "config": {"secrets": {"HF_TOKEN": "hf_not_mine"}}}
        )
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["error"]["code"] == "bad_hf_token"
        own = {"model_id": PRIVATE_MODEL, "config": {"secrets": {"HF_TOKEN": USER_TOKEN}}}
        created = await client.post("/v1/deployments", json=own)
        assert created.status_code == 202, created.text
        deployment_id = created.json()["id"]
        running = await deploy_stack.wait_status(deployment_id, {"running", "failed"})
        assert running["status"] == "running", running
        assert running["config"]["secrets"] == ["HF_TOKEN"]
        answer = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": "hello"})
        assert answer.status_code == 200, answer.text
        await client.delete(f"/v1/deployments/{deployment_id}")


async def test_bad_revisions_and_repo_ids_are_422(deploy_stack: DeployStack) -> None:
    async with deploy_stack.client() as client:
        for body in (
            {"model_id": MODEL, "revision": "../../../../tmp/x"},
            {"model_id": MODEL, "revision": "nope"},
            {"model_id": "a--b/c"},
            {"model_id": "abc/def.git"},
            {"model_id": "a/.."},
        ):
            answer = await client.post("/v1/deployments", json=body)
            assert answer.status_code == 422, (body, answer.text)


def _space_settings(**changes: Any) -> DeployerSettings:
    return DeployerSettings(
        hf_endpoint="http://127.0.0.1:9",
        hf_space_namespace="hubpulse",
        provision_timeout_s=1,
        space_poll_s=0.1,
        **changes,
    )


async def test_space_predict_sends_the_platform_token() -> None:
    seen: list[str | None] = []
    space = FastAPI()

    @space.post("/predict")
    async def predict(request: Request) -> dict[str, list[str]]:
        seen.append(request.headers.get("authorization"))
        return {"outputs": ["ok"]}

    target = HfSpaceTarget(_space_settings(hf_token=PLATFORM_TOKEN, predict_timeout_s=5))
    async with serving(space) as url:
        assert await target.predict("d", {"host": url}, ["hi"]) == ["ok"]
    await target.close()
    # the Space is private: without the token the Hub would not let the call through
    assert seen == [f"Bearer {PLATFORM_TOKEN}"]
    assert HfApi(endpoint=url, token=False)._build_hf_headers(token=False).get("authorization") is None


async def test_limits_are_4xx_naming_the_setting(deploy_stack: DeployStack) -> None:
    """Audit M8: hardware from an allow-list, memory and deployment count per organisation, download size."""
    settings = deploy_stack.settings
    async with deploy_stack.client() as client:
        gpu = await client.post(
            "/v1/deployments", json={"model_id": MODEL, "target": "hf-space", "config": {"hardware": "a100-large"}}
        )
        assert gpu.status_code == 422, gpu.text
        assert gpu.json()["error"]["code"] == "hardware_not_allowed"
        assert "HUBPULSE_ALLOWED_HARDWARE" in gpu.json()["error"]["message"]

        big = {"memory_mb": 10240, "autoscaling": {"min_replicas": 1, "max_replicas": 2}}
        memory = await client.post("/v1/deployments", json={"model_id": MODEL, "target": "kubernetes", "config": big})
        assert memory.status_code == 403, memory.text
        assert "HUBPULSE_MAX_MEMORY_MB_PER_ORG" in memory.json()["error"]["message"]

        # the deployer's (frozen) settings, lowered for this call: the demo classifier's files are about 40 KB
        limit = settings.max_model_bytes
        object.__setattr__(settings, "max_model_bytes", 1000)
        try:
            large = await client.post("/v1/deployments", json={"model_id": MODEL})
        finally:
            object.__setattr__(settings, "max_model_bytes", limit)
        assert large.status_code == 422, large.text
        assert large.json()["error"]["code"] == "model_too_large"
        assert "HUBPULSE_MAX_MODEL_BYTES" in large.json()["error"]["message"]

        small = {"model_id": MODEL, "target": "kubernetes", "config": {"memory_mb": 128}}
        created = []
        for _ in range(settings.max_deployments_per_org + 1):
            answer = await client.post("/v1/deployments", json=small)
            if answer.status_code != 202:
                break
            created.append(answer.json()["id"])
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "quota_exceeded"
        assert "HUBPULSE_MAX_DEPLOYMENTS_PER_ORG" in answer.json()["error"]["message"]
        # a new version of an existing deployment is checked too, without counting it twice
        grow = await client.patch(f"/v1/deployments/{created[0]}", json={"config": big})
        assert grow.status_code == 403, grow.text
        fits = await client.patch(f"/v1/deployments/{created[0]}", json={"config": {"memory_mb": 256}})
        assert fits.status_code == 202, fits.text
        # deleted deployments free their place
        await client.delete(f"/v1/deployments/{created[0]}")
        again = await client.post("/v1/deployments", json=small)
        assert again.status_code == 202, again.text
        for deployment_id in [*created[1:], again.json()["id"]]:
            await client.delete(f"/v1/deployments/{deployment_id}")


async def test_bad_variables_are_422(deploy_stack: DeployStack) -> None:
    """Audit M9, at the deployer itself: a NUL or `$` in a variable name, a value over the 4096-character cap (the
    audit's 17 MiB one, over Mongo's document limit, is now stopped earlier by the services' body limit: 413)."""
    # the caller's token, as the gateway forwards it
    async with httpx.AsyncClient(base_url=deploy_stack.deployer, headers=deploy_stack.headers, timeout=60) as client:
        for env in ({"A\u0000B": "x"}, {"$where": "x"}, {"A": "x" * 65536}):
            for field in ("env", "secrets"):
                answer = await client.post("/deployments", json={"model_id": MODEL, "config": {field: env}})
                assert answer.status_code == 422, answer.text[:300]


async def test_a_hub_that_is_down_is_503_not_500(deploy_stack: DeployStack) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = deploy_stack.settings.model_copy(update={"hf_endpoint": dead})
    async with (
        serving(create_deployer_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=deploy_stack.headers) as client,
    ):
        answer = await client.post("/deployments", json={"model_id": MODEL})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "hub_unavailable"


async def test_spaces_need_the_platform_token() -> None:
    target = HfSpaceTarget(_space_settings(hf_token=None, predict_timeout_s=1))
    spec = Spec("c" * 32, MODEL, "main", "text-classification", 1, DeploymentConfig())
    with pytest.raises(ProvisionError, match="HUBPULSE_HF_TOKEN"):
        await target.provision(spec)
    await target.close()


async def test_deployability_says_whether_the_model_server_can_serve_a_repo(deploy_stack: DeployStack) -> None:
    """What the model page asks before it offers Deploy (anonymously: a visitor need not be logged in)."""
    async with httpx.AsyncClient() as hub:
        listed = (await hub.get(f"{deploy_stack.hub}/api/models", params={"full": "true"})).json()
    no_files = next(m["id"] for m in listed if servable(m.get("pipeline_tag")) and m["author"] != "hubpulse-demo")
    no_task = next(m["id"] for m in listed if not servable(m.get("pipeline_tag")))
    async with httpx.AsyncClient(base_url=deploy_stack.gateway, timeout=30) as client:

        async def ask(model_id: str) -> dict[str, object]:
            answer = await client.get(f"/v1/models/{model_id}/deployability")
            assert answer.status_code == 200, answer.text
            body: dict[str, object] = answer.json()
            assert body["model_id"] == model_id
            assert (body["reason"] is None) == body["deployable"], body
            return body

        demo = await ask(MODEL)
        assert (demo["deployable"], demo["runtime"], demo["task"]) == (True, "onnx", "text-classification")
        assert isinstance(demo["download_bytes"], int)
        assert demo["download_bytes"] > 0
        weightless = await ask(no_files)
        assert weightless["code"] == "not_servable"
        assert "no weights" in str(weightless["reason"])
        assert (await ask(no_task))["code"] == "unsupported_task"
        private = await ask(PRIVATE_MODEL)
        assert private["code"] == "model_not_public"
        assert "HF_TOKEN" in str(private["reason"])
        assert (await ask("nobody/nothing"))["code"] == "unknown_model"
        bad = await client.get("/v1/models/a--b/c/deployability")
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["code"] == "invalid_model_id"
