"""Settings of the ingestor service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class IngestorSettings(ServiceSettings):
    service_name: str = "ingestor"
    port: int = 8002
