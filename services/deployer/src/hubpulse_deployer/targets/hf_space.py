"""`hf-space`: a Gradio Space on the Hub that serves the model with a transformers pipeline.

Provisioning creates the Space repo (hardware and secrets with it), commits `app.py`, `requirements.txt` and a
README, sets the public variables, then follows the Space's runtime stage until RUNNING (-> running) or an error
stage (-> failed with the stage as reason). The Space answers `POST /predict {"inputs": [...]}` like the local
model server; where the Hub gives no host for it (the replay Hub runs no Space code) it is marked not invocable.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import httpx
from huggingface_hub import CommitOperationAdd, HfApi, SpaceHardware
from huggingface_hub.errors import HfHubHTTPError

from hubpulse_common.inference import Input
from hubpulse_deployer.documents import Endpoint
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_deployer.targets.base import NOT_INVOCABLE, ProvisionError, Spec, Usage, call_model_server, slug

# stages a Space does not leave by itself: https://huggingface.co/docs/huggingface_hub/package_reference/space_runtime
_FAILED_STAGES = {"BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "DELETING", "STOPPED", "PAUSED"}
_SETTLING_S = 30.0  # NO_APP_FILE right after the commit is the Hub catching up, not yet a failure

APP = '''"""Serves {model_id}@{revision} ({task}): JSON at POST /predict, a Gradio form at /."""
import os

import gradio as gr
import uvicorn
from fastapi import FastAPI, Request
from transformers import pipeline

pipe = pipeline({task!r}, model={model_id!r}, revision={revision!r}, device="cpu")
app = FastAPI()


@app.get("/healthz")
def healthz():
    return {{"status": "ok", "task": {task!r}}}


@app.post("/predict")
async def predict(request: Request):
    inputs = (await request.json())["inputs"]
    return {{"outputs": pipe(inputs if isinstance(inputs, list) else [inputs])}}


demo = gr.Interface(fn=lambda text: str(pipe(text)), inputs="text", outputs="text", title={model_id!r})
app = gr.mount_gradio_app(app, demo, path="/")

if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "7860")))
'''
REQUIREMENTS = "transformers>=4.46\ntorch\ngradio>=5\nfastapi\nuvicorn\n"
README = """---
title: {title}
sdk: gradio
app_file: app.py
pinned: false
tags: [hubpulse]
---
Deployed by hubpulse: `{model_id}` at `{revision}`, task `{task}`.
"""


def space_files(spec: Spec) -> dict[str, bytes]:
    fields = {"model_id": spec.model_id, "revision": spec.revision, "task": spec.task}
    return {
        "app.py": APP.format(**fields).encode(),
        "requirements.txt": REQUIREMENTS.encode(),
        "README.md": README.format(title=spec.slug, **fields).encode(),
    }


class HfSpaceTarget:
    name = "hf-space"

    def __init__(self, settings: DeployerSettings) -> None:
        hf_token = settings.hub_token()
        self._api = HfApi(endpoint=settings.hf_endpoint, token=hf_token)
        # the Space is private: the platform calls it with its own token
        self._auth = {"authorization": f"Bearer {hf_token}"} if isinstance(hf_token, str) else {}
        self._namespace = settings.hf_space_namespace
        self._start_timeout_s, self._poll_s = settings.provision_timeout_s, settings.space_poll_s
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(settings.predict_timeout_s, connect=3.0))

    def _repo_id(self, spec: Spec) -> str:
        return f"{self._namespace}/{spec.slug}"

    def _create(self, spec: Spec) -> str:
        repo_id = self._repo_id(spec)
        config = spec.config
        # any flavor name the Hub offers (HUBPULSE_ALLOWED_HARDWARE); SpaceHardware lists the ones known to the client
        hardware = cast(SpaceHardware, config.hardware)
        secrets = [{"key": k, "value": v} for k, v in sorted(config.secrets.items())]
        if not self._api.repo_exists(repo_id, repo_type="space"):
            # exist_ok: a redeploy racing this one; the Hub answers its 409 with the repo's url
            self._api.create_repo(
                repo_id,
                repo_type="space",
                space_sdk="gradio",
                space_hardware=hardware,
                space_secrets=secrets,
                private=True,
                exist_ok=True,
            )
        # a new version of an existing Space: hardware and secrets may have changed
        self._api.request_space_hardware(repo_id, hardware)
        for secret in secrets:
            self._api.add_space_secret(repo_id, secret["key"], secret["value"])
        for key, value in sorted(config.env.items()):
            self._api.add_space_variable(repo_id, key, value)
        operations = [CommitOperationAdd(path, data) for path, data in space_files(spec).items()]
        self._api.create_commit(
            repo_id, operations, repo_type="space", commit_message=f"hubpulse: deploy version {spec.version}"
        )
        return repo_id

    def _follow(self, repo_id: str) -> Endpoint:
        started = time.monotonic()
        stage = "unknown"
        while time.monotonic() - started < self._start_timeout_s:
            runtime = self._api.get_space_runtime(repo_id)
            stage = str(runtime.stage)
            if stage == "RUNNING":
                info = self._api.space_info(repo_id)
                endpoint: Endpoint = {
                    "space_id": repo_id,
                    "url": f"{self._api.endpoint}/spaces/{repo_id}",
                    "host": info.host,
                    "hardware": runtime.hardware,
                    "sha": info.sha,
                }
                if not info.host:
                    endpoint[NOT_INVOCABLE] = (
                        f"Space {repo_id} is RUNNING but the Hub at {self._api.endpoint} gives no host for it: "
                        "it is not reachable from here (the replay Hub runs no Space code)"
                    )
                return endpoint
            if stage in _FAILED_STAGES and (stage != "NO_APP_FILE" or time.monotonic() - started > _SETTLING_S):
                raw = runtime.raw.get("errorMessage") if isinstance(runtime.raw, dict) else None
                raise ProvisionError(f"Space {repo_id} ended in stage {stage}" + (f": {raw}" if raw else ""))
            time.sleep(self._poll_s)
        raise ProvisionError(f"Space {repo_id} not RUNNING within {self._start_timeout_s:.0f}s (stage {stage})")

    async def provision(self, spec: Spec) -> Endpoint:
        if not self._auth:
            raise ProvisionError("hf-space needs the platform's Hub token (HUBPULSE_HF_TOKEN), and none is configured")
        try:
            repo_id = await asyncio.to_thread(self._create, spec)
            return await asyncio.to_thread(self._follow, repo_id)
        except HfHubHTTPError as exc:
            raise ProvisionError(f"the Hub refused the Space: {str(exc)[:300]}") from exc

    async def teardown(self, deployment_id: str, endpoint: Endpoint | None) -> None:
        repo_id = (endpoint or {}).get("space_id") or f"{self._namespace}/{slug(deployment_id)}"
        await asyncio.to_thread(self._api.delete_repo, repo_id, repo_type="space", missing_ok=True)

    async def predict(self, deployment_id: str, endpoint: Endpoint, inputs: list[Input]) -> list[Any]:
        return await call_model_server(self._client, str(endpoint["host"]), inputs, "the Space", headers=self._auth)

    def resources(self, deployment_id: str) -> Usage | None:
        return None  # the Hub runs the Space; its hardware is on the endpoint

    async def close(self) -> None:
        await self._client.aclose()

    def exited(self) -> dict[str, str]:
        return {}
