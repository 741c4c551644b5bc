"""What every target does, and the errors that carry a reason a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class ProvisionError(Exception):
    """The target could not start this deployment; the message is the `failed` reason."""


class TargetUnavailable(Exception):
    """The deployment cannot answer a predict call now (HTTP `status`: 503 down, 501 not offered)."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Spec:
    """One deployment version, as a target needs it."""

    deployment_id: str
    model_id: str
    revision: str
    task: str
    version: int
    config: dict[str, Any]


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
