"""`local`: download what the runtime loads from the Hub, serve it with that runtime in a process of its own.

One model server process per deployment (`python -m hubpulse_deployer.model_server`), watched by the deployer:
a server that dies is reported by `exited()` so the deployment turns `failed` with the exit reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from huggingface_hub.errors import HTTPError, LocalEntryNotFoundError  # type: ignore[attr-defined]

from hubpulse_common.inference import MODEL_SERVER_TOKEN_VARIABLE, Input, model_server_token
from hubpulse_common.processes import free_port, log_tail
from hubpulse_deployer.documents import Endpoint
from hubpulse_deployer.runtime import Refused
from hubpulse_deployer.runtime.fetch import fetch, user_token
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_deployer.targets.base import (
    ModelServerClient,
    ProvisionError,
    Spec,
    TargetUnavailable,
    Usage,
    batching_args,
)

# The model server loads a folder: it gets none of the deployer's secrets (Hub token, store credentials and URLs).
_SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "ACCESS_KEY", "_URL")
# progress bars would fill the log whose tail becomes the failure reason
_SERVER_ENV = {
    **{k: v for k, v in os.environ.items() if not any(m in k.upper() for m in _SECRET_MARKERS)},
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class _Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    version: int
    ps: psutil.Process
    revision: str
    url: str
    model_dir: str
    batching: list[str]  # the model server's batching arguments
    token: str  # what the server takes as `Authorization: Bearer`


def _spawn(command: list[str], log: Path, token: str) -> subprocess.Popen[bytes]:
    env = {**_SERVER_ENV, MODEL_SERVER_TOKEN_VARIABLE: token}  # in the environment: argv is visible to every user
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)


class LocalTarget:
    name = "local"

    def __init__(self, settings: DeployerSettings) -> None:
        self._endpoint, self._token = settings.hf_endpoint, settings.hub_token()
        self._data_dir, self._host = settings.data_dir, settings.model_server_host
        self._start_timeout_s = settings.provision_timeout_s
        # shared with the gateway, which then calls the servers itself (the data plane); without it each server
        # gets a random token only this deployer knows
        secret = settings.model_server_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        self._servers: dict[str, _Server] = {}
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(settings.predict_timeout_s, connect=2.0))
        self._predict = ModelServerClient(settings.predict_timeout_s)

    async def close(self) -> None:
        for deployment_id in list(self._servers):
            await self.teardown(deployment_id, None)
        await self._client.aclose()
        await self._predict.close()

    def _download(self, spec: Spec) -> str:
        try:
            own = user_token(spec.config)
            return fetch(
                spec.model_id,
                spec.revision,
                spec.task,
                endpoint=self._endpoint,
                token=own or self._token,
                public_only=own is None,
                cache_dir=self._data_dir / "hf-cache",
            )
        except Refused as exc:
            raise ProvisionError(f"download of {spec.model_id}@{spec.revision} refused: {exc}") from exc
        except (HTTPError, LocalEntryNotFoundError) as exc:  # HTTPError: the Hub's answers and transport errors
            raise ProvisionError(f"download of {spec.model_id}@{spec.revision} failed: {str(exc)[:300]}") from exc

    async def provision(self, spec: Spec) -> Endpoint:
        running = self._servers.get(spec.deployment_id)
        batching = batching_args(spec.config)
        same = running is not None and running.revision == spec.revision and running.batching == batching
        if running is not None and running.proc.poll() is None and same:
            # a version that changes only config the local server does not use (autoscaling, hardware, memory):
            # the server already loaded this revision keeps serving, no restart
            running.version = spec.version
            return {"url": running.url, "pid": running.proc.pid, "model_dir": running.model_dir}
        model_dir = await asyncio.to_thread(self._download, spec)
        port = free_port(self._host)
        log = self._data_dir / "deployments" / spec.deployment_id / f"server-v{spec.version}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "hubpulse_deployer.model_server",
            "--model-dir",
            model_dir,
            "--task",
            spec.task,
            "--host",
            self._host,
            "--port",
            str(port),
            *batching,
        ]
        url = f"http://{self._host}:{port}"
        token = model_server_token(self._secret, spec.deployment_id, url) if self._secret else secrets.token_urlsafe(32)
        proc = await asyncio.to_thread(_spawn, command, log, token)
        server = _Server(
            proc=proc,
            port=port,
            log=log,
            version=spec.version,
            ps=psutil.Process(proc.pid),
            revision=spec.revision,
            url=url,
            model_dir=model_dir,
            batching=batching,
            token=token,
        )
        try:
            await self._wait_ready(server, url)
        except BaseException:  # also cancellation (deleted while starting): never leave an orphan server
            self._stop(server)
            raise
        previous = self._servers.get(spec.deployment_id)
        self._servers[spec.deployment_id] = server
        if previous is not None:
            # the new version answers before the old one goes: no gap for callers
            self._stop(previous)
        return {"url": url, "pid": proc.pid, "model_dir": model_dir}

    async def _wait_ready(self, server: _Server, url: str) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            code = server.proc.poll()
            if code is not None:
                raise ProvisionError(
                    f"model server exited with code {code} while starting: {log_tail(server.log, chars=600)}"
                )
            try:
                if (await self._client.get(f"{url}/healthz", timeout=1.0)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
        raise ProvisionError(
            f"model server did not answer within {self._start_timeout_s:.0f}s: {log_tail(server.log, chars=600)}"
        )

    def _stop(self, server: _Server) -> None:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()

    async def teardown(self, deployment_id: str, endpoint: Endpoint | None) -> None:
        server = self._servers.pop(deployment_id, None)
        if server is not None:
            await asyncio.to_thread(self._stop, server)

    async def predict(self, deployment_id: str, endpoint: Endpoint, inputs: list[Input]) -> list[Any]:
        server = self._servers.get(deployment_id)
        if server is None or server.proc.poll() is not None:
            raise TargetUnavailable("the model server of this deployment is not running")
        headers = {"authorization": f"Bearer {server.token}"}
        return await self._predict.predict(server.url, inputs, "the model server", headers)

    def resources(self, deployment_id: str) -> Usage | None:
        server = self._servers.get(deployment_id)
        if server is None or server.proc.poll() is not None:
            return None
        try:
            with server.ps.oneshot():
                return {
                    "pid": server.proc.pid,
                    # since the previous call (psutil keeps the last sample per process)
                    "cpu_percent": server.ps.cpu_percent(None),
                    "memory_rss_bytes": server.ps.memory_info().rss,
                    "threads": server.ps.num_threads(),
                }
        except psutil.Error:
            return None

    def exited(self) -> dict[str, str]:
        dead = {}
        for deployment_id, server in list(self._servers.items()):
            code = server.proc.poll()
            if code is not None:
                del self._servers[deployment_id]
                dead[deployment_id] = f"model server exited with code {code}: {log_tail(server.log, chars=600)}"
        return dead
