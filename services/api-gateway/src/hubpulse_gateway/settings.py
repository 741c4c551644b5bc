"""Settings of the gateway service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    port: int = 8000
