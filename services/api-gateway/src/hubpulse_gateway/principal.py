"""Who the caller is, as the gateway's routes and upstream calls see it: a leaf module (imports no gateway code),
so that `security.py` (which builds a `Principal`) and `upstream.py` (which forwards it) both depend on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from hubpulse_common.identity import ROLE_RANK, Role


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, in the organisation the credential was issued for."""

    user_id: str
    org_id: str
    role: Role
    email: str | None = None
    scopes: frozenset[str] = frozenset({"read", "write"})
    via: Literal["bearer", "cookie", "api_key"] = "bearer"
    # The access JWT upstream calls carry to act as this caller (for an API key, the short-lived JWT the auth
    # service minted for it); never logged.
    credential: str = field(default="", repr=False)
    api_key_id: str | None = None
    expires_at: float | None = None  # epoch seconds after which `credential` is no longer accepted

    def has_role(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def principal_from_claims(claims: dict[str, Any], token: str, via: Literal["bearer", "cookie"]) -> Principal:
    return Principal(
        user_id=str(claims["sub"]),
        org_id=str(claims["org"]),
        role=cast(Role, claims["role"]),
        email=claims.get("email"),
        scopes=frozenset(claims.get("scope", "read write").split()),
        via=via,
        credential=token,
        expires_at=float(claims["exp"]),
    )
