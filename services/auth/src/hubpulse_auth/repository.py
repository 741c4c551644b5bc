"""PostgreSQL I/O of the auth service (asyncpg). Tokens and keys are stored only as hashes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

Row = dict[str, Any]


def _row(record: asyncpg.Record | None) -> Row | None:
    return dict(record) if record is not None else None


async def create_user(
    conn: asyncpg.Connection,
    *,
    email: str | None,
    name: str | None,
    password_hash: str | None,
    org_name: str,
    hf_sub: str | None = None,
    hf_username: str | None = None,
    email_verified: bool = False,
) -> Row | None:
    """A new user with a personal organisation they administer; None when the email is taken."""
    user_id, org_id = uuid.uuid4(), uuid.uuid4()
    async with conn.transaction():
        user = await conn.fetchrow(
            """INSERT INTO auth_users (id, email, name, password_hash, hf_sub, hf_username, email_verified)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING *""",
            user_id,
            email,
            name,
            password_hash,
            hf_sub,
            hf_username,
            email_verified,
        )
        if user is None:
            return None
        await conn.execute("INSERT INTO auth_orgs (id, name) VALUES ($1, $2)", org_id, org_name)
        await conn.execute(
            "INSERT INTO auth_memberships (org_id, user_id, role) VALUES ($1, $2, 'admin')", org_id, user_id
        )
    return dict(user)


async def user_by(conn: asyncpg.Connection, column: str, value: object) -> Row | None:
    assert column in ("id", "email", "hf_sub")
    return _row(await conn.fetchrow(f"SELECT * FROM auth_users WHERE {column} = $1", value))  # noqa: S608


async def update_user(conn: asyncpg.Connection, user_id: str, changes: Row) -> Row | None:
    """None when the new email belongs to someone else."""
    if not changes:
        return await user_by(conn, "id", uuid.UUID(user_id))
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    try:
        return _row(
            await conn.fetchrow(
                f"UPDATE auth_users SET {sets}, updated_at = now() WHERE id = $1 RETURNING *",  # noqa: S608
                uuid.UUID(user_id),
                *changes.values(),
            )
        )
    except asyncpg.UniqueViolationError:
        return None


async def memberships(conn: asyncpg.Connection, user_id: str) -> list[Row]:
    rows = await conn.fetch(
        """SELECT m.org_id::text AS org_id, o.name, m.role FROM auth_memberships m
           JOIN auth_orgs o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY m.created_at""",
        uuid.UUID(user_id),
    )
    return [dict(r) for r in rows]


async def role_in(conn: asyncpg.Connection, user_id: str, org_id: str) -> str | None:
    role: str | None = await conn.fetchval(
        "SELECT role FROM auth_memberships WHERE user_id = $1 AND org_id = $2", uuid.UUID(user_id), uuid.UUID(org_id)
    )
    return role


async def org_members(conn: asyncpg.Connection, org_id: str) -> list[Row]:
    rows = await conn.fetch(
        """SELECT u.id::text AS user_id, u.email, u.name, m.role FROM auth_memberships m
           JOIN auth_users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at""",
        uuid.UUID(org_id),
    )
    return [dict(r) for r in rows]


async def put_member(conn: asyncpg.Connection, org_id: str, user_id: str, role: str) -> None:
    await conn.execute(
        """INSERT INTO auth_memberships (org_id, user_id, role) VALUES ($1, $2, $3)
           ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role""",
        uuid.UUID(org_id),
        uuid.UUID(user_id),
        role,
    )


# Signing keys


async def newest_key(conn: asyncpg.Connection) -> Row | None:
    return _row(
        await conn.fetchrow("SELECT * FROM auth_signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1")
    )


async def add_key(conn: asyncpg.Connection, kid: str, alg: str, public_jwk: Row, sealed: bytes) -> None:
    async with conn.transaction():
        await conn.execute("UPDATE auth_signing_keys SET retired_at = now() WHERE retired_at IS NULL")
        await conn.execute(
            "INSERT INTO auth_signing_keys (kid, alg, public_jwk, private_jwk) VALUES ($1, $2, $3, $4)",
            kid,
            alg,
            public_jwk,
            sealed,
        )


async def published_keys(conn: asyncpg.Connection, grace: dt.timedelta) -> list[Row]:
    """The current key and the retired ones whose tokens may still be unexpired."""
    rows = await conn.fetch(
        """SELECT public_jwk FROM auth_signing_keys
           WHERE retired_at IS NULL OR retired_at > now() - $1::interval ORDER BY created_at DESC""",
        grace,
    )
    return [r["public_jwk"] for r in rows]


# Refresh tokens


async def new_family(conn: asyncpg.Connection, user_id: str, org_id: str, csrf_hash: str | None) -> str:
    family_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO auth_token_families (id, user_id, org_id, csrf_hash) VALUES ($1, $2, $3, $4)",
        family_id,
        uuid.UUID(user_id),
        uuid.UUID(org_id),
        csrf_hash,
    )
    return str(family_id)


async def add_refresh_token(conn: asyncpg.Connection, token_hash: str, family_id: str, ttl: dt.timedelta) -> None:
    await conn.execute(
        "INSERT INTO auth_refresh_tokens (token_hash, family_id, expires_at) VALUES ($1, $2, now() + $3::interval)",
        token_hash,
        uuid.UUID(family_id),
        ttl,
    )


async def lock_refresh_token(conn: asyncpg.Connection, token_hash: str) -> Row | None:
    """The token with its family, locked for this transaction (two concurrent refreshes cannot both win)."""
    return _row(
        await conn.fetchrow(
            """SELECT t.family_id::text AS family_id, t.used_at, t.expires_at < now() AS expired,
                      f.user_id::text AS user_id, f.org_id::text AS org_id, f.csrf_hash, f.revoked_at
               FROM auth_refresh_tokens t JOIN auth_token_families f ON f.id = t.family_id
               WHERE t.token_hash = $1 FOR UPDATE OF t, f""",
            token_hash,
        )
    )


async def spend_refresh_token(conn: asyncpg.Connection, token_hash: str) -> None:
    await conn.execute("UPDATE auth_refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash)


async def revoke_families_of(conn: asyncpg.Connection, user_id: str, keep: str | None) -> None:
    """End every login session of a user (but `keep`, the one asking)."""
    await conn.execute(
        """UPDATE auth_token_families SET revoked_at = now()
           WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2::uuid)""",
        uuid.UUID(user_id),
        uuid.UUID(keep) if keep else None,
    )


async def family_active(conn: asyncpg.Connection, family_id: str) -> bool:
    """The login session exists and was not revoked (logout, reuse, password or email change)."""
    try:
        family = uuid.UUID(family_id)
    except ValueError:
        return False
    revoked = await conn.fetchval("SELECT revoked_at IS NOT NULL FROM auth_token_families WHERE id = $1", family)
    return revoked is False


async def revoke_family(conn: asyncpg.Connection, family_id: str) -> None:
    await conn.execute(
        "UPDATE auth_token_families SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1", uuid.UUID(family_id)
    )


# API keys


async def add_api_key(
    conn: asyncpg.Connection, key_id: str, user_id: str, org_id: str, name: str, scopes: list[str], secret_hash: str
) -> Row:
    row = await conn.fetchrow(
        """INSERT INTO auth_api_keys (id, user_id, org_id, name, scopes, secret_hash)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, name, scopes, created_at""",
        key_id,
        uuid.UUID(user_id),
        uuid.UUID(org_id),
        name,
        scopes,
        secret_hash,
    )
    assert row is not None
    return dict(row)


async def api_keys_of(conn: asyncpg.Connection, user_id: str, org_id: str) -> list[Row]:
    rows = await conn.fetch(
        """SELECT id, name, scopes, created_at, last_used_at FROM auth_api_keys
           WHERE user_id = $1 AND org_id = $2 AND revoked_at IS NULL ORDER BY created_at""",
        uuid.UUID(user_id),
        uuid.UUID(org_id),
    )
    return [dict(r) for r in rows]


async def revoke_api_key(conn: asyncpg.Connection, key_id: str, user_id: str, org_id: str) -> bool:
    status: str = await conn.execute(
        """UPDATE auth_api_keys SET revoked_at = now()
           WHERE id = $1 AND user_id = $2 AND org_id = $3 AND revoked_at IS NULL""",
        key_id,
        uuid.UUID(user_id),
        uuid.UUID(org_id),
    )
    return status.endswith(" 1")


async def live_api_key(conn: asyncpg.Connection, key_id: str) -> Row | None:
    """An unrevoked key with its owner's current role in the key's organisation; touches last_used_at."""
    return _row(
        await conn.fetchrow(
            """UPDATE auth_api_keys k SET last_used_at = now()
               FROM auth_memberships m, auth_users u
               WHERE k.id = $1 AND k.revoked_at IS NULL AND m.user_id = k.user_id AND m.org_id = k.org_id
                 AND u.id = k.user_id
               RETURNING k.id, k.user_id::text AS user_id, k.org_id::text AS org_id, k.scopes, k.secret_hash,
                         m.role, u.email""",
            key_id,
        )
    )


# OAuth sign-in states


async def add_oauth_state(
    conn: asyncpg.Connection, state: str, verifier: str, nonce: str, return_to: str, link_user_id: str | None
) -> None:
    await conn.execute("DELETE FROM auth_oauth_states WHERE created_at < now() - interval '1 hour'")
    await conn.execute(
        """INSERT INTO auth_oauth_states (state, code_verifier, nonce, return_to, link_user_id)
           VALUES ($1, $2, $3, $4, $5)""",
        state,
        verifier,
        nonce,
        return_to,
        uuid.UUID(link_user_id) if link_user_id else None,
    )


async def take_oauth_state(conn: asyncpg.Connection, state: str, max_age: dt.timedelta) -> Row | None:
    """Single use: the state row is deleted as it is read."""
    return _row(
        await conn.fetchrow(
            "DELETE FROM auth_oauth_states WHERE state = $1 AND created_at > now() - $2::interval RETURNING *",
            state,
            max_age,
        )
    )
