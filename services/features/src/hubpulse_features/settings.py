"""Settings of the features service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class FeaturesSettings(ServiceSettings):
    service_name: str = "features"
    port: int = 8003
