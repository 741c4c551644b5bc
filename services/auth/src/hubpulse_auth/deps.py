"""The auth service's request dependencies, as `Annotated` aliases; `app.py`'s lifespan (the composition root)
builds the one `AuthState` they hand out. The caller's identity comes from `hubpulse_common.identity`
(`CallerIdentity`, `MemberIdentity`, `AdminIdentity`), shared by every service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends
from limits.aio.strategies import MovingWindowRateLimiter

from hubpulse_auth.hashing import HashingGate
from hubpulse_auth.keys import KeyRing
from hubpulse_auth.oauth import HfSignIn
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.http import AppState


@dataclass(frozen=True)
class AuthState:
    """Everything the lifespan opened, for the length of the app (`app.state.auth`)."""

    pool: asyncpg.Pool
    settings: AuthSettings
    keys: KeyRing
    hf: HfSignIn
    limiter: MovingWindowRateLimiter
    hashing: HashingGate


AUTH_STATE: AppState[AuthState] = AppState("auth")
AuthDep = Annotated[AuthState, Depends(AUTH_STATE)]
