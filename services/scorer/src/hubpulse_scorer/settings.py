"""Settings of the scorer service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class ScorerSettings(ServiceSettings):
    service_name: str = "scorer"
    port: int = 8004
