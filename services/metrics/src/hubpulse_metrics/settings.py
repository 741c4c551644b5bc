"""Settings of the metrics service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class MetricsSettings(ServiceSettings):
    service_name: str = "metrics"
    port: int = 8006
