"""Business rules of the auth service: plain functions on plain data, no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from email_validator import EmailNotValidError, validate_email
from joserfc import jwt
from joserfc.jwk import ECKey

from hubpulse_auth.errors import InvalidEmail, InvalidScopes, WeakPassword

Role = Literal["viewer", "member", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "member": 1, "admin": 2}
ALG = "ES256"
API_KEY_PREFIX = "hpk_"
API_KEY_SCOPES = frozenset({"read", "write"})

# argon2id with the library's RFC 9106 "low memory" defaults: 64 MiB per hash or verification (hashing.py bounds
# how many run at once).
_hasher = PasswordHasher()
HASH_MEMORY_KIB = _hasher.memory_cost
# Verified against when the email is unknown, so a miss costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def normalise_email(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None


def check_password_strength(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise WeakPassword(f"the password needs at least {min_length} characters")
    if password.strip() == "" or len(set(password)) < 4:
        raise WeakPassword("the password needs at least 4 different characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def cipher(secret: str) -> Fernet:
    """Fernet key derived from the configured secret (Fernet wants 32 url-safe base64 bytes)."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def new_signing_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex, "alg": ALG, "use": "sig"}, private=True)


def seal_key(key: ECKey, fernet: Fernet) -> bytes:
    return fernet.encrypt(json.dumps(key.as_dict(private=True)).encode())


def open_key(sealed: bytes, fernet: Fernet) -> ECKey:
    try:
        return ECKey.import_key(json.loads(fernet.decrypt(sealed)))
    except InvalidToken:
        raise RuntimeError("cannot decrypt the signing key: HUBPULSE_SIGNING_KEY_SECRET changed?") from None


@dataclass(frozen=True)
class AccessGrant:
    user_id: str
    org_id: str
    role: Role
    email: str | None
    session_id: str | None  # the refresh-token family; None for a token minted for an API key
    csrf_hash: str | None = None
    api_key_id: str | None = None
    scopes: tuple[str, ...] = ("read", "write")


def access_claims(
    grant: AccessGrant, *, issuer: str, audience: str, ttl_s: int, now: int | None = None
) -> dict[str, Any]:
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": grant.user_id,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
        "org": grant.org_id,
        "role": grant.role,
        "email": grant.email,
        "scope": " ".join(grant.scopes),
    }
    if grant.session_id is not None:
        claims["sid"] = grant.session_id
    if grant.api_key_id is not None:
        claims["akid"] = grant.api_key_id
    if grant.csrf_hash is not None:
        claims["csrf"] = grant.csrf_hash
    return claims


def sign(claims: dict[str, Any], key: ECKey) -> str:
    return jwt.encode({"alg": ALG, "kid": key.kid, "typ": "JWT"}, claims, key)


def api_key_string(key_id: str, secret: str) -> str:
    return f"{API_KEY_PREFIX}{key_id}_{secret}"


def parse_api_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(API_KEY_PREFIX) :].partition("_")
    return (key_id, secret) if sep and key_id and secret else None


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - API_KEY_SCOPES)
    if unknown or not scopes:
        raise InvalidScopes(f"scopes must be a non-empty subset of {sorted(API_KEY_SCOPES)}")
    return sorted(set(scopes))


def api_key_role(member_role: Role, scopes: list[str]) -> Role:
    """What a key may do: at most its creator's role, viewer without `write`, never admin (that needs a login)."""
    if "write" not in scopes:
        return "viewer"
    return "member" if ROLE_RANK[member_role] >= ROLE_RANK["member"] else member_role


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
