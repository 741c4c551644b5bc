"""Settings of the gateway (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from hubpulse_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    port: int = 8000
    deployer_url: str = "http://127.0.0.1:8005"
    metrics_url: str = "http://127.0.0.1:8006"
    # explanations of a model's score computed on demand (the model detail of a model that is no pick)
    scorer_url: str = "http://127.0.0.1:8004"
    # The deployer's HUBPULSE_MODEL_SERVER_SECRET: with it the gateway calls `local` deployments' model servers
    # itself (dataplane.py). Set it only where the gateway reaches the deployer's HUBPULSE_MODEL_SERVER_HOST.
    model_server_secret: SecretStr | None = None
    # Where people open a model on the Hub (the web app's "On the Hub" link); the demo points it at the replay Hub.
    hub_url: str = "https://huggingface.co"

    # Calls to upstream services (upstream.py): a dependency down answers 503 within about these bounds.
    upstream_timeout_s: float = 3.0
    upstream_connect_timeout_s: float = 0.5
    upstream_retries: int = 2
    breaker_threshold: int = 5
    breaker_reset_s: float = 10.0

    # Credentials (security.py); issuer, audience and the JWKS cache are ServiceSettings.
    api_key_cache_s: float = 10.0
    # How long a "this login session is still active" answer of the auth service is reused (logout, password change).
    session_check_cache_s: float = 5.0

    # Per principal (or per client IP when anonymous or the credential is not genuine), `limits` notation.
    api_rate_limit: str = "600/minute"
    # Sign-up and login attempts per client IP (the auth service limits failed logins per account).
    auth_ip_rate_limit: str = "60/minute"
    # Failed logins per account, counted across replicas (with mongodb storage) before the auth service's own
    # per-process count: a wrong password spends one, a locked account is refused without reaching auth.
    login_account_rate_limit: str = "10/minute"
    # Where the rate-limit counters live: `memory` (this process only, so N replicas or workers allow N times
    # the limits) or `mongodb` (HUBPULSE_MONGO_URL, one budget across every replica; docs/decisions/rate-limits.md).
    rate_limit_storage: Literal["memory", "mongodb"] = "memory"
    # With mongodb: the longest a check waits for MongoDB; past it (or on any error) the gateway counts in its
    # own memory for rate_limit_store_retry_s, then tries MongoDB again (fail open to per-process limits).
    rate_limit_store_timeout_s: float = Field(default=0.25, gt=0)
    rate_limit_store_retry_s: float = Field(default=10.0, ge=0)
    cookie_secure: bool = False
    # search and live picks
    workers: int = 1
    db_pool_size: int = 10
    db_work_mem: str = "32MB"  # PostgreSQL work_mem of the gateway's sessions (search bitmaps, app.py)
    search_cache_ttl_s: float = 30.0
    search_cache_size: int = 10_000  # 0 turns the search cache off
    # The search planner's in-memory sample of the catalog (catalog/plan.py CatalogSample); 0 = no sample.
    search_sample_rows: int = 20_000
    search_sample_refresh_s: float = 600.0
    live_poll_s: float = 1.0
