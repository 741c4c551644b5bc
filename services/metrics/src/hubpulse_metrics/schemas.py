"""Request and response models of the metrics service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AlertMetric = Literal["error_rate", "p95_latency_ms"]
UsageGroup = Literal["user", "org", "deployment"]


class AlertRule(BaseModel):
    """Fire when `metric` over the trailing `window_s` exceeds `threshold` (per deployment)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=100)
    metric: AlertMetric
    threshold: float = Field(ge=0)
    window_s: int = Field(default=300, ge=1)
    min_requests: int = Field(default=1, ge=1, description="Too few calls say nothing; stay quiet below this")
    deployment_id: str | None = Field(default=None, description="None: every deployment")


class LatencyStats(BaseModel):
    requests: int
    errors: int
    error_rate: float
    throughput_rps: float
    inputs: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None


class SeriesPoint(LatencyStats):
    minute: datetime


class ResourceStats(BaseModel):
    samples: int
    cpu_percent_avg: float | None = None
    cpu_percent_max: float | None = None
    memory_mb_avg: float | None = None
    memory_mb_max: float | None = None
    duration_ms_avg: float | None = None
    duration_ms_p95: float | None = None


class DeploymentState(BaseModel):
    status: str
    model_id: str
    target: str
    version: int
    sequence: int
    reason: str | None
    changed_at: datetime


class DeploymentMetrics(BaseModel):
    deployment_id: str
    since: datetime
    until: datetime
    filters: dict[str, str]
    summary: LatencyStats
    series: list[SeriesPoint]
    resources: ResourceStats
    state: DeploymentState | None


class LiveDeployment(LatencyStats):
    deployment_id: str


class LiveSnapshot(BaseModel):
    at: datetime
    window_s: float
    deployments: list[LiveDeployment]


class UsageRow(BaseModel):
    key: str | None = Field(description="user id, org id or deployment id, by `group_by`")
    requests: int
    errors: int
    inputs: int
    request_bytes: int
    response_bytes: int
    mean_latency_ms: float | None


class UsageReport(BaseModel):
    group_by: UsageGroup
    since: datetime
    until: datetime
    rows: list[UsageRow]


class ResourceSample(BaseModel):
    """Resource use of one deployment at one moment: local servers report CPU/memory, Lambda duration/memory."""

    deployment_id: str = Field(min_length=1, max_length=200)
    at: datetime | None = None
    cpu_percent: float | None = Field(default=None, ge=0)
    memory_mb: float | None = Field(default=None, ge=0)
    duration_ms: float | None = Field(default=None, ge=0)


class ResourceBatch(BaseModel):
    samples: list[ResourceSample] = Field(min_length=1, max_length=1000)


class Alert(BaseModel):
    alert_id: str
    rule: str
    deployment_id: str
    metric: AlertMetric
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    window_s: int
    changed_at: datetime
