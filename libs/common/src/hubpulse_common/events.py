"""Every event that crosses Kafka, defined once. Each class names its topic and its key.

Versioning: the topic name carries the major version (`hub.snapshots.v1`); `schema_version` inside
the value carries the minor one. Consumers ignore unknown fields, so adding an optional field is a
minor bump; removing or retyping one is a new topic (`.v2`). The AsyncAPI document in
docs/asyncapi.yaml is generated from these classes (`python -m hubpulse_common.asyncapi`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    """Base of every Kafka value: versioned, timestamped, and ignorant of fields it does not know."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    topic: ClassVar[str]
    key_field: ClassVar[str] = "model_id"

    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return str(getattr(self, self.key_field))


class ModelSnapshot(Event):
    """One model's Hub statistics on one day. Natural key: (model_id, snapshot_date)."""

    topic: ClassVar[str] = "hub.snapshots.v1"

    model_id: str
    snapshot_date: date
    downloads: int = Field(ge=0, description="Downloads over the last 30 days, as the Hub reports them")
    downloads_all_time: int | None = Field(default=None, ge=0)
    likes: int = Field(ge=0)
    trending_score: float | None = None
    trending_rank: int | None = Field(default=None, ge=1)
    pipeline_tag: str | None = None
    library_name: str | None = None
    author: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    last_modified: datetime | None = None
    source: Literal["hub", "import", "bench"] = "hub"


class ModelFeatures(Event):
    """Velocity features of one model on one day. Natural key: (model_id, snapshot_date)."""

    topic: ClassVar[str] = "hub.features.v1"

    model_id: str
    snapshot_date: date
    features: dict[str, float | None]
    provisional: bool = Field(
        default=False,
        description="True would mean the day is still arriving (cross-sectional features ranking only part of it); "
        "hubpulse's features service publishes each model-day once, final, when its day closes",
    )
    # The day's raw stats ride along so that consumers (the scorer's catalog) need no join with the
    # features store.
    downloads: int | None = None
    downloads_all_time: int | None = None
    likes: int | None = None
    trending_rank: int | None = None
    pipeline_tag: str | None = None
    library_name: str | None = None
    author: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    last_modified: datetime | None = None


class Contribution(BaseModel):
    """One feature's signed push on a score (XGBoost's own contribution, in log-odds)."""

    model_config = ConfigDict(frozen=True)

    feature: str
    value: float | None
    contribution: float


class ModelScore(Event):
    """Trend probability of one model on one day by one model version.

    Natural key: (model_id, snapshot_date, model_version).
    """

    topic: ClassVar[str] = "hub.scores.v1"

    model_id: str
    snapshot_date: date
    model_version: str
    label: str = Field(description="What the probability is of: 'trending' or 'surge'")
    horizon_days: int
    probability: float = Field(ge=0.0, le=1.0)
    threshold: float = Field(ge=0.0, le=1.0, description="Operating threshold of this model version")
    top_features: list[Contribution] = Field(default_factory=list)


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"
    DELETED = "deleted"


class DeploymentEvent(Event):
    """A deployment changed state. Key: deployment_id. Natural key: (deployment_id, sequence)."""

    topic: ClassVar[str] = "deploy.events.v1"
    key_field: ClassVar[str] = "deployment_id"

    deployment_id: str
    sequence: int = Field(ge=0, description="Monotonic per deployment; consumers drop what they have seen")
    model_id: str
    revision: str | None = None
    target: Literal["local", "hf-space", "aws-lambda", "kubernetes"]
    status: DeploymentStatus
    previous_status: DeploymentStatus | None = None
    reason: str | None = None
    version: int = Field(ge=1, description="Deployment version (config revision) this transition belongs to")
    user_id: str | None = None
    org_id: str | None = None


class InferenceEvent(Event):
    """One predict call through the gateway. Key: deployment_id. Natural key: request_id."""

    topic: ClassVar[str] = "inference.events.v1"
    key_field: ClassVar[str] = "deployment_id"

    request_id: str = Field(default_factory=new_event_id)
    deployment_id: str
    model_id: str
    user_id: str | None = None
    org_id: str | None = None
    status: Literal["ok", "error"]
    http_status: int
    latency_ms: float = Field(ge=0)
    inputs: int = Field(ge=0, description="Number of inputs in the call (1, or the batch size)")
    request_bytes: int = Field(ge=0)
    response_bytes: int = Field(ge=0)
    error: str | None = None


class AlertEvent(Event):
    """An alert rule started or stopped firing for a deployment. Key: deployment_id."""

    topic: ClassVar[str] = "alerts.v1"
    key_field: ClassVar[str] = "deployment_id"

    alert_id: str
    rule: str
    deployment_id: str
    metric: str = Field(description="What the rule watches: 'error_rate' or 'p95_latency_ms'")
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    window_s: int


ALL_EVENTS: tuple[type[Event], ...] = (
    ModelSnapshot,
    ModelFeatures,
    ModelScore,
    DeploymentEvent,
    InferenceEvent,
    AlertEvent,
)

ALL_TOPICS: tuple[str, ...] = tuple(e.topic for e in ALL_EVENTS)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def event_schema(event: type[Event]) -> dict[str, Any]:
    return event.model_json_schema(mode="serialization")
