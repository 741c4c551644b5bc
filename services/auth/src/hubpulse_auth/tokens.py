"""Issuing and rotating token pairs: an access JWT and a refresh token in a family.

Every refresh spends its token and issues the next of the same family; presenting a spent token again means
it leaked, so the whole family (every session descended from that login) is revoked.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

import asyncpg

from hubpulse_auth import repository as repo
from hubpulse_auth.errors import CsrfFailed, InvalidRefreshToken, RefreshTokenReused
from hubpulse_auth.keys import KeyRing
from hubpulse_auth.service import AccessGrant, Role, access_claims, new_secret, secrets_equal, sha256_hex, sign
from hubpulse_auth.settings import AuthSettings


async def issue(
    conn: asyncpg.Connection,
    keys: KeyRing,
    settings: AuthSettings,
    *,
    user: dict[str, Any],
    org_id: str,
    role: str,
    session: bool,
    family_id: str | None = None,
    csrf_hash: str | None = None,
) -> dict[str, Any]:
    """A new token pair; a new family unless `family_id` (a refresh) is given. Web sessions get a CSRF token."""
    csrf_token = None
    if family_id is None:
        if session:
            csrf_token = new_secret()
            csrf_hash = sha256_hex(csrf_token)
        family_id = await repo.new_family(conn, str(user["id"]), org_id, csrf_hash)
    refresh_token = new_secret()
    await repo.add_refresh_token(
        conn, sha256_hex(refresh_token), family_id, dt.timedelta(seconds=settings.refresh_ttl_s)
    )
    grant = AccessGrant(str(user["id"]), org_id, cast(Role, role), user.get("email"), family_id, csrf_hash)
    claims = access_claims(
        grant, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_s=settings.access_ttl_s
    )
    tokens: dict[str, Any] = {
        "access_token": sign(claims, await keys.signing_key()),
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": settings.access_ttl_s,
        "refresh_expires_in": settings.refresh_ttl_s,
    }
    if csrf_token is not None:
        tokens["csrf_token"] = csrf_token
    return tokens


def _check_csrf(family_csrf_hash: str | None, csrf_token: str | None) -> None:
    """A refresh or logout through the session cookie must show the session's CSRF token."""
    if csrf_token is None:
        return
    if family_csrf_hash is None or not secrets_equal(family_csrf_hash, sha256_hex(csrf_token)):
        raise CsrfFailed("wrong CSRF token for this session")


async def rotate(
    pool: asyncpg.Pool, keys: KeyRing, settings: AuthSettings, refresh_token: str, csrf_token: str | None
) -> dict[str, Any]:
    token_hash = sha256_hex(refresh_token)
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await repo.lock_refresh_token(conn, token_hash)
            if row is None or row["revoked_at"] is not None or row["expired"]:
                raise InvalidRefreshToken("refresh token unknown, expired or revoked; log in again")
            _check_csrf(row["csrf_hash"], csrf_token)
            if row["used_at"] is None:
                role = await repo.role_in(conn, row["user_id"], row["org_id"])
                user = await repo.user_by(conn, "id", uuid.UUID(row["user_id"]))
                if role is None or user is None:
                    raise InvalidRefreshToken("you are no longer a member of this organisation")
                await repo.spend_refresh_token(conn, token_hash)
                return await issue(
                    conn,
                    keys,
                    settings,
                    user=user,
                    org_id=row["org_id"],
                    role=role,
                    session=False,
                    family_id=row["family_id"],
                    csrf_hash=row["csrf_hash"],
                )
            await repo.revoke_family(conn, row["family_id"])
        # Raised after the transaction committed the revocation.
        raise RefreshTokenReused("refresh token already used: this session is revoked; log in again")


async def revoke(pool: asyncpg.Pool, refresh_token: str, csrf_token: str | None) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.lock_refresh_token(conn, sha256_hex(refresh_token))
        if row is None:
            return
        _check_csrf(row["csrf_hash"], csrf_token)
        await repo.revoke_family(conn, row["family_id"])
