"""The deployer's request dependencies: the one `DeployerState` its lifespan (the composition root, `app.py`) opens,
and an `Annotated` alias for routes. The caller's identity comes from `hubpulse_common.identity`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from huggingface_hub import HfApi

from hubpulse_deployer.idempotency import IdempotencyCache
from hubpulse_deployer.orchestrator import Orchestrator
from hubpulse_deployer.settings import DeployerSettings


@dataclass(frozen=True)
class DeployerState:
    """Everything the lifespan opened, for the length of the app (`app.state.deployer`)."""

    orchestrator: Orchestrator
    idempotency: IdempotencyCache
    settings: DeployerSettings
    hub: HfApi  # no token of its own: each call passes the one it may use (the user's, or the platform's)


def state_of(request: Request) -> DeployerState:
    state: DeployerState = request.app.state.deployer
    return state


async def _state(request: Request) -> DeployerState:
    return state_of(request)


DeployerDep = Annotated[DeployerState, Depends(_state)]
