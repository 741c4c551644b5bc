"""What every target does, and the errors that carry a reason a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx


class ProvisionError(Exception):
    """The target could not start this deployment; the message is the `failed` reason."""


class NotApplied(Exception):
    """The target did its part but nothing runs yet (e.g. manifests rendered, no cluster to apply them to):
    the deployment stays `pending` with this reason, and `endpoint` is stored."""

    def __init__(self, reason: str, endpoint: dict[str, Any]) -> None:
        super().__init__(reason)
        self.endpoint = endpoint


class TargetUnavailable(Exception):
    """The deployment cannot answer a predict call now (HTTP `status`: 503 down, 501 not offered)."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


# Set on an endpoint whose deployment runs but cannot be called from here (the reason is the value): the gateway
# answers 503 at once instead of retrying a call that cannot succeed.
NOT_INVOCABLE = "not_invocable"


@dataclass(frozen=True)
class Spec:
    """One deployment version, as a target needs it."""

    deployment_id: str
    model_id: str
    revision: str
    task: str
    version: int
    config: dict[str, Any]

    @property
    def slug(self) -> str:
        """A name for this deployment's resources, valid as a DNS label, Space name and Lambda function name."""
        return f"hubpulse-{self.deployment_id[:20]}"


class Target(Protocol):
    name: str

    async def provision(self, spec: Spec) -> dict[str, Any]:
        """Start `spec`; return its endpoint (stored on the deployment). Raise `ProvisionError` with the reason."""
        ...

    async def teardown(self, deployment_id: str, endpoint: dict[str, Any] | None) -> None:
        """Take the deployment down; idempotent."""
        ...

    async def predict(self, deployment_id: str, endpoint: dict[str, Any], inputs: list[str]) -> list[Any]:
        """One output per input, or `TargetUnavailable`."""
        ...

    def resources(self, deployment_id: str) -> dict[str, Any] | None:
        """Resource use of what runs the deployment, where the target can see it."""
        ...

    async def close(self) -> None:
        """Release what the target holds (servers, clients) at shutdown."""
        ...

    def exited(self) -> dict[str, str]:
        """Deployments whose serving process died since the last call, with the reason."""
        ...


async def call_model_server(
    client: httpx.AsyncClient, url: str, inputs: list[str], who: str, headers: dict[str, str] | None = None
) -> list[Any]:
    """`POST {url}/predict` of a model server (local process, Space, cluster Service): one output per input."""
    try:
        response = await client.post(f"{url}/predict", json={"inputs": inputs}, headers=headers)
    except httpx.TimeoutException as exc:
        raise TargetUnavailable(f"{who} did not answer in time ({type(exc).__name__})", 504) from exc
    except httpx.TransportError as exc:
        raise TargetUnavailable(f"{who} at {url} is not reachable from here ({type(exc).__name__}: {exc})") from exc
    if response.status_code != 200:
        raise TargetUnavailable(f"{who} answered {response.status_code}: {response.text[:300]}", 502)
    outputs: list[Any] = response.json()["outputs"]
    return outputs
