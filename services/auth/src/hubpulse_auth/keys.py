"""The signing keys: ES256, private halves encrypted in PostgreSQL, rotated by age, published as a JWKS.

A retired key stays in the JWKS for one access-token lifetime, so tokens it signed verify until they expire.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from hubpulse_auth import repository as repo
from hubpulse_auth.service import ALG, ROLE_RANK, cipher, new_signing_key, open_key, seal_key
from hubpulse_auth.settings import AuthSettings

LEEWAY_S = 5


class KeyRing:
    def __init__(self, pool: asyncpg.Pool, settings: AuthSettings) -> None:
        self._pool = pool
        self._settings = settings
        self._fernet = cipher(settings.signing_key_secret.get_secret_value())
        self._private: dict[str, ECKey] = {}

    async def signing_key(self) -> ECKey:
        """The newest key, rotated first when older than `key_rotation_s`."""
        async with self._pool.acquire() as conn:
            row = await repo.newest_key(conn)
        if row is None or _age_s(row["created_at"]) > self._settings.key_rotation_s:
            row = await self.rotate(only_if_older_than_s=self._settings.key_rotation_s)
        kid = row["kid"]
        if kid not in self._private:
            self._private[kid] = open_key(row["private_jwk"], self._fernet)
        return self._private[kid]

    async def rotate(self, only_if_older_than_s: float | None = None) -> dict[str, Any]:
        """Make a new signing key current (several processes: one wins, the others reuse its key)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hubpulse-auth-keys'))")
            row = await repo.newest_key(conn)
            if (
                row is not None
                and only_if_older_than_s is not None
                and _age_s(row["created_at"]) <= only_if_older_than_s
            ):
                return row
            key = new_signing_key()
            await repo.add_key(conn, str(key.kid), ALG, key.as_dict(private=False), seal_key(key, self._fernet))
            fresh = await repo.newest_key(conn)
        assert fresh is not None
        return fresh

    async def jwks(self) -> dict[str, Any]:
        grace = dt.timedelta(seconds=self._settings.access_ttl_s + LEEWAY_S)
        async with self._pool.acquire() as conn:
            keys = await repo.published_keys(conn, grace)
        return {"keys": keys}

    async def verify(self, token: str) -> dict[str, Any] | None:
        """Claims of a valid access token of ours, else None (for the auth service's own endpoints)."""
        try:
            keys = KeySet.import_key_set(await self.jwks())  # type: ignore[arg-type]
            decoded = jwt.decode(token, keys, algorithms=[ALG])
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY_S,
                iss={"essential": True, "value": self._settings.jwt_issuer},
                aud={"essential": True, "value": self._settings.jwt_audience},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            return None
        claims: dict[str, Any] = decoded.claims
        return claims if claims.get("role") in ROLE_RANK else None


def _age_s(created_at: dt.datetime) -> float:
    return (dt.datetime.now(dt.UTC) - created_at).total_seconds()
