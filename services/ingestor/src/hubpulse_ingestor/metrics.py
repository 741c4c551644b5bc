"""Prometheus metrics of ingestion (served by the shared /metrics route)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MODELS = Counter("hubpulse_ingest_models_total", "Model snapshots written and published", ["source"])
PAGES = Counter("hubpulse_ingest_pages_total", "Hub pages fetched", ["outcome"])
RETRIES = Counter("hubpulse_ingest_retries_total", "Hub page fetches retried by the ingestor", ["reason"])
CYCLES = Counter("hubpulse_ingest_cycles_total", "Ingestion cycles finished", ["status"])
CYCLE_SECONDS = Gauge("hubpulse_ingest_last_cycle_seconds", "Wall time of the last finished cycle")
LAST_CYCLE_FINISHED = Gauge(
    "hubpulse_ingest_last_cycle_timestamp_seconds", "When the last cycle of a status finished", ["status"]
)
LAST_CYCLE_MODELS = Gauge(
    "hubpulse_ingest_last_cycle_models", "Models of the last finished cycle: listed by the Hub, stored", ["outcome"]
)
LAST_CYCLE_PAGES = Gauge("hubpulse_ingest_last_cycle_pages", "Pages of the last cycle: ok, skipped", ["outcome"])
