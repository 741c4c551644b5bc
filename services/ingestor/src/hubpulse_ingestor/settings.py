"""Settings of the ingestor service (`HUBPULSE_*` environment variables, plus huggingface_hub's `HF_ENDPOINT`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from hubpulse_common.settings import ServiceSettings


class IngestorSettings(ServiceSettings, service="ingestor", port=8002):
    # The same variable huggingface_hub reads, so `HF_ENDPOINT=... hubpulse ingest --once` just works.
    hf_endpoint: str = Field(
        "https://huggingface.co", validation_alias=AliasChoices("HF_ENDPOINT", "HUBPULSE_HF_ENDPOINT")
    )
    ingest_interval_s: float = Field(86_400.0, gt=0, description="Seconds between the starts of two cycles")
    ingest_enabled: bool = Field(True, description="Run cycles in the background (off: HTTP status only)")
    page_limit: int = Field(1000, ge=1, le=1000, description="Models asked for per Hub page")
    batch_models: int = Field(20_000, ge=1, description="Models written, published and checkpointed together")
    # huggingface_hub retries 429/5xx itself (honouring Retry-After); these shape that and our retries on top.
    http_retries: int = Field(5, ge=0, description="huggingface_hub retries per request")
    http_base_wait_s: float = Field(1.0, ge=0)
    http_max_wait_s: float = Field(8.0, ge=0)
    http_timeout_s: float = Field(60.0, gt=0)
    page_attempts: int = Field(4, ge=1, description="Fetches of a page before it is reported as failed")
    page_retry_wait_s: float = Field(1.0, ge=0, description="First wait between page attempts, doubling")
    ratelimit_reserve: int = Field(
        2, ge=0, description="Requests left in the Hub's rate-limit window at which the walk waits for the reset"
    )
    trending_top: int = Field(100, ge=0, le=1000, description="Models whose trending rank is recorded each cycle")
    interrupted_pause_s: float = Field(
        300.0, gt=0, description="Wait before resuming a walk stopped at a page that kept failing"
    )
    # Each batch's snapshots go out on hub.snapshots.v2 (many models a message). True also publishes them on
    # hub.snapshots.v1, one message per model, for consumers not yet moved to v2.
    snapshots_publish_v1: bool = False
