"""What every target does, and the errors that carry a reason a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
import orjson

from hubpulse_common.inference import Input, error_message
from hubpulse_common.service import CLIENT_KEEPALIVE_S
from hubpulse_deployer.documents import Endpoint
from hubpulse_deployer.schemas import DeploymentConfig

# What a target reports of what runs a deployment (pid, cpu_percent, memory_rss_bytes, memory_mb, ...).
Usage = dict[str, float]


class ProvisionError(Exception):
    """The target could not start this deployment; the message is the `failed` reason."""


class NotApplied(Exception):
    """The target did its part but nothing runs yet (e.g. manifests rendered, no cluster to apply them to):
    the deployment stays `pending` with this reason, and `endpoint` is stored."""

    def __init__(self, reason: str, endpoint: Endpoint) -> None:
        super().__init__(reason)
        self.endpoint = endpoint


class InputRejected(Exception):
    """The model server refused the inputs (its 422): the caller's fault, answered 422 with its message."""


class TargetUnavailable(Exception):
    """The deployment cannot answer a predict call now: its server is down or unreachable."""


class TargetFailed(TargetUnavailable):
    """The deployment's server answered, with an error of its own."""


class TargetTimeout(TargetUnavailable):
    """The deployment's server did not answer in time."""


# Set on an endpoint whose deployment runs but cannot be called from here (the reason is the value): the gateway
# answers 503 at once instead of retrying a call that cannot succeed.
NOT_INVOCABLE = "not_invocable"


def slug(deployment_id: str) -> str:
    """A name for a deployment's resources, valid as a DNS label, Space name and Lambda function name."""
    return f"hubpulse-{deployment_id[:20]}"


@dataclass(frozen=True)
class Spec:
    """One deployment version, as a target needs it."""

    deployment_id: str
    model_id: str
    revision: str
    task: str
    version: int
    config: DeploymentConfig

    @property
    def slug(self) -> str:
        return slug(self.deployment_id)


class Target(Protocol):
    name: str

    async def provision(self, spec: Spec) -> Endpoint:
        """Start `spec`; return its endpoint (stored on the deployment). Raise `ProvisionError` with the reason."""
        ...

    async def teardown(self, deployment_id: str, endpoint: Endpoint | None) -> None:
        """Take the deployment down; idempotent."""
        ...

    async def predict(self, deployment_id: str, endpoint: Endpoint, inputs: list[Input]) -> list[Any]:
        """One output per input, or `TargetUnavailable`."""
        ...

    def resources(self, deployment_id: str) -> Usage | None:
        """Resource use of what runs the deployment, where the target can see it."""
        ...

    async def close(self) -> None:
        """Release what the target holds (servers, clients) at shutdown."""
        ...

    def exited(self) -> dict[str, str]:
        """Deployments whose serving process died since the last call, with the reason."""
        ...


async def call_model_server(
    client: httpx.AsyncClient, url: str, inputs: list[Input], who: str, headers: dict[str, str] | None = None
) -> list[Any]:
    """`POST {url}/predict` of a model server (local process, Space, cluster Service): one output per input."""
    try:
        response = await client.post(f"{url}/predict", json={"inputs": inputs}, headers=headers)
    except httpx.TimeoutException as exc:
        raise TargetTimeout(f"{who} did not answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TargetUnavailable(f"{who} at {url} is not reachable from here ({type(exc).__name__}: {exc})") from exc
    return _outputs(response.status_code, response.content, who)


class ModelServerClient:
    """Predict calls to model servers over a keep-alive aiohttp pool: the local target's hot path.

    aiohttp, not httpx, here: per call it costs about a third of the CPU (measured in docs/decisions/deployer.md),
    and on the predict path every hop's CPU is latency."""

    def __init__(self, timeout_s: float, connect_timeout_s: float = 2.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def predict(
        self, url: str, inputs: list[Input], who: str, headers: dict[str, str] | None = None
    ) -> list[Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEPALIVE_S),
                timeout=self._timeout,
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
        try:
            async with self._session.post(f"{url}/predict", json={"inputs": inputs}, headers=headers) as response:
                body = await response.read()
        except TimeoutError as exc:
            raise TargetTimeout(f"{who} did not answer in time ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise TargetUnavailable(f"{who} at {url} is not reachable from here ({type(exc).__name__}: {exc})") from exc
        return _outputs(response.status, body, who)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _outputs(status: int, body: bytes, who: str) -> list[Any]:
    """The outputs of a model server's answer; `InputRejected` for its 422, `TargetUnavailable` for the rest."""
    if status == 422:
        raise InputRejected(error_message(body))
    if status != 200:
        raise TargetFailed(f"{who} answered {status}: {body[:300].decode(errors='replace')}")
    outputs: list[Any] = orjson.loads(body)["outputs"]
    return outputs


def batching_args(config: DeploymentConfig) -> list[str]:
    """The model server's batching arguments for a deployment's config."""
    batching = config.batching
    return ["--max-batch-size", str(batching.max_batch_size), "--max-wait-ms", str(batching.max_wait_ms)]
