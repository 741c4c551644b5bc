"""Settings of the auth service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from pydantic import SecretStr

from hubpulse_common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    service_name: str = "auth"
    port: int = 8001

    jwt_issuer: str = "hubpulse-auth"
    jwt_audience: str = "hubpulse-api"
    access_ttl_s: int = 900
    refresh_ttl_s: int = 30 * 24 * 3600
    key_rotation_s: int = 24 * 3600
    # Encrypts the private signing keys at rest in PostgreSQL; set a real secret outside dev.
    signing_key_secret: SecretStr = SecretStr("hubpulse-dev-only-signing-key-secret")
    # Login attempts per account and per client IP (`limits` notation).
    login_rate_limit: str = "10/minute"
    login_ip_rate_limit: str = "60/minute"
    min_password_length: int = 8

    # Sign in with Hugging Face (OpenID Connect, PKCE). The issuer serves /.well-known/openid-configuration.
    hf_issuer: str = "https://huggingface.co"
    hf_client_id: str = "hubpulse"
    hf_client_secret: SecretStr = SecretStr("")
    hf_redirect_uri: str = "http://127.0.0.1:8000/v1/auth/hf/callback"
