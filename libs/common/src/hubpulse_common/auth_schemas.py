"""Request bodies of the public auth routes: one definition for the gateway, which documents and validates
them, and the auth service, which receives them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from hubpulse_common.http import NO_NUL


class SignupBody(BaseModel):
    email: str = Field(max_length=320, pattern=NO_NUL)
    password: str = Field(min_length=1, max_length=1024)
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


class LoginBody(BaseModel):
    email: str = Field(max_length=320, pattern=NO_NUL)
    password: str = Field(min_length=1, max_length=1024)
    org_id: str | None = Field(
        default=None, max_length=64, pattern=NO_NUL, description="organisation to act in; default: your own"
    )
    session: bool = Field(default=False, description="set HttpOnly session cookies (the web app)")


class ProfilePatch(BaseModel):
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    email: str | None = Field(default=None, max_length=320, pattern=NO_NUL)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    scopes: list[Annotated[str, Field(max_length=32, pattern=NO_NUL)]] = Field(
        default_factory=lambda: ["read"], max_length=4
    )


class MemberPut(BaseModel):
    email: str = Field(max_length=320, pattern=NO_NUL)
    role: str = Field(pattern="^(viewer|member|admin)$")
