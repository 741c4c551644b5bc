"""Request bodies of the auth service."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SignupBody(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    name: str | None = Field(default=None, max_length=200)


class LoginBody(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    org_id: str | None = Field(default=None, max_length=64)
    session: bool = False


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)
    csrf_token: str | None = Field(default=None, max_length=512)


class ProfilePatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=lambda: ["read"], max_length=4)


class KeyCheck(BaseModel):
    key: str = Field(min_length=1, max_length=512)


class MemberPut(BaseModel):
    email: str = Field(max_length=320)
    role: str = Field(pattern="^(viewer|member|admin)$")


class HfStart(BaseModel):
    return_to: str = Field(default="/", max_length=512)


class HfFinish(BaseModel):
    code: str = Field(min_length=1, max_length=2048)
    state: str = Field(min_length=1, max_length=256)
