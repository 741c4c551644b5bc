"""Settings of the gateway (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    port: int = 8000
    auth_url: str = "http://127.0.0.1:8001"
    deployer_url: str = "http://127.0.0.1:8005"
    metrics_url: str = "http://127.0.0.1:8006"
