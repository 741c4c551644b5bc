"""The deployer's request dependencies: the one `DeployerState` its lifespan (the composition root, `app.py`) opens,
and an `Annotated` alias for routes. The caller's identity comes from `hubpulse_common.identity`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from huggingface_hub import HfApi

from hubpulse_common.http import AppState
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


DEPLOYER_STATE: AppState[DeployerState] = AppState("deployer")
state_of = DEPLOYER_STATE.of
DeployerDep = Annotated[DeployerState, Depends(DEPLOYER_STATE)]
