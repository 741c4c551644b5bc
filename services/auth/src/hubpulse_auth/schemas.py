"""Request bodies of the auth service."""

from __future__ import annotations

from pydantic import BaseModel, Field

# The public bodies are shared with the gateway; this module re-exports them for the routes.
from hubpulse_common.auth_schemas import ApiKeyCreate, LoginBody, MemberPut, ProfilePatch, SignupBody

__all__ = [
    "ApiKeyCreate",
    "HfFinish",
    "HfStart",
    "KeyCheck",
    "LoginBody",
    "MemberPut",
    "ProfilePatch",
    "RefreshBody",
    "SignupBody",
]


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)
    csrf_token: str | None = Field(default=None, max_length=512)


class KeyCheck(BaseModel):
    key: str = Field(min_length=1, max_length=512)


class HfStart(BaseModel):
    return_to: str = Field(default="/", max_length=512)


class HfFinish(BaseModel):
    code: str = Field(min_length=1, max_length=2048)
    state: str = Field(min_length=1, max_length=256)
