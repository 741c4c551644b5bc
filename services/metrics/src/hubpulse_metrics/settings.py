"""Settings of the metrics service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

import secrets

from pydantic import Field, SecretStr, model_validator

from hubpulse_common.settings import ConsumerSettings
from hubpulse_metrics.schemas import AlertRule


class MetricsSettings(ConsumerSettings, service="metrics", port=8006):
    raw_retention_days: int = Field(default=14, ge=1, description="TTL of raw inference events")
    max_query_window_h: float = Field(default=24 * 7, gt=0, description="Longest time range one query may cover")
    default_query_window_min: float = Field(default=60, gt=0)
    live_window_s: float = Field(default=60, gt=0, description="Trailing window of each live push")
    live_interval_s: float = Field(default=1.0, gt=0)

    # JSON list, e.g. [{"name": "errors", "metric": "error_rate", "threshold": 0.05, "window_s": 300}]
    alert_rules: list[AlertRule] = Field(default_factory=list)
    alert_interval_s: float = Field(default=5.0, gt=0)
    alert_webhook_url: str | None = None
    alert_webhook_attempts: int = Field(default=4, ge=1)
    alert_webhook_timeout_s: float = Field(default=5.0, gt=0)

    # Watches (watches/): webhooks to private or loopback addresses are refused unless allowed here
    # (the offline demo allows loopback).
    watch_webhook_allow_loopback: bool = False
    watch_webhook_allow_private: bool = False
    watch_webhook_attempts: int = Field(default=5, ge=1, description="Attempts in one round")
    watch_webhook_backoff_s: float = Field(default=0.5, gt=0, description="First retry wait; doubles each time")
    # Standard Webhooks' schedule after the first round: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a day)
    watch_webhook_retry_s: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        description="Waits before each later round of a webhook that failed for a transient reason",
    )
    # Standard Webhooks recommends 15-30 s: a receiver slower than the timeout gets the same message again
    watch_webhook_timeout_s: float = Field(default=15.0, gt=0)
    watch_email_attempts: int = Field(default=3, ge=1)
    watch_delivery_poll_s: float = Field(default=1.0, gt=0, description="Pending alerts are looked for this often")
    watch_digest_interval_s: float = Field(default=86_400, gt=0)
    # Signs unsubscribe links: every replica must share it and it must outlive restarts, or a link mailed by one
    # process is refused by the next. Required in prod; elsewhere a random one per process.
    watch_link_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "hubpulse <alerts@hubpulse.local>"
    smtp_sender: str = Field(default="alerts@hubpulse.local", description="The envelope sender (MAIL FROM)")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = Field(
        default=None,
        description="STARTTLS: None upgrades where the relay offers it, True requires it, False never upgrades",
    )
    smtp_use_tls: bool = Field(default=False, description="Implicit TLS from the first byte (port 465)")

    @model_validator(mode="after")
    def _link_secret_set_in_prod(self) -> MetricsSettings:
        # a generated default passes the common dev-secret guard (it is not a fixed value), so it is checked here
        if self.environment == "prod" and "watch_link_secret" not in self.model_fields_set:
            raise ValueError(
                "HUBPULSE_WATCH_LINK_SECRET must be set with HUBPULSE_ENVIRONMENT=prod: it signs the unsubscribe "
                "links of watch e-mails, and every metrics replica must verify what the others signed"
            )
        return self
