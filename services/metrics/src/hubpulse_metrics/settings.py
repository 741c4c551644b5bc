"""Settings of the metrics service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

from hubpulse_common.settings import ServiceSettings
from hubpulse_metrics.schemas import AlertRule


class MetricsSettings(ServiceSettings):
    service_name: str = "metrics"
    port: int = 8006

    consumer_group: str = "metrics"
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
