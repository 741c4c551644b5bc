"""Settings of the auth service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from hubpulse_common.settings import ServiceSettings


class AuthSettings(ServiceSettings, service="auth", port=8001):
    # Short: services behind the gateway accept a token until it expires (the gateway checks revocation).
    access_ttl_s: int = 300
    # Lifetime of the JWT minted for an API key at each verification (the gateway re-verifies every api_key_cache_s).
    api_key_token_ttl_s: int = 60
    refresh_ttl_s: int = 30 * 24 * 3600
    key_rotation_s: int = 24 * 3600
    # Encrypts the private signing keys at rest in PostgreSQL; set a real secret outside dev.
    signing_key_secret: SecretStr = SecretStr("hubpulse-dev-only-signing-key-secret")
    # Failed login attempts per account (`limits` notation); per client IP is the gateway's (it knows the IP).
    login_rate_limit: str = "10/minute"
    # Memory argon2 may hold at once (64 MiB per running hash or verification), and how long a request waits
    # for its turn before a 503 with Retry-After. 256 MiB: 4 at once inside the pod's 512 Mi.
    hash_memory_budget_mib: int = Field(default=256, ge=64)
    hash_wait_s: float = Field(default=2.0, ge=0)
    min_password_length: int = 8

    # Sign in with Hugging Face (OpenID Connect, PKCE). The issuer serves /.well-known/openid-configuration.
    hf_issuer: str = "https://huggingface.co"
    hf_client_id: str = "hubpulse"
    hf_client_secret: SecretStr = SecretStr("")
    hf_redirect_uri: str = "http://127.0.0.1:8000/v1/auth/hf/callback"
