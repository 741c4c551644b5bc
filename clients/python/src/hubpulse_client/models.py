"""Typed answers of the API. Each model carries the name of its schema in the gateway's OpenAPI document
(docs/openapi.json); a test checks that fields and required fields agree (no drift)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

WatchKind = Literal["model", "author", "task", "library", "search"]
Condition = Literal["threshold", "picks", "surge", "new_model"]


class ApiModel(BaseModel):
    # New fields from a newer server are kept, not refused: the client keeps working against it.
    model_config = ConfigDict(extra="allow")
    openapi_name: ClassVar[str]


class ModelSummary(ApiModel):
    openapi_name = "ModelSummary"
    model_id: str
    author: str | None
    pipeline_tag: str | None
    library_name: str | None
    tags: list[str]
    created_at: datetime | None
    snapshot_date: date
    downloads: int
    likes: int
    trending_rank: int | None
    growth_7d: float | None
    probability: float | None


class SearchPage(ApiModel):
    openapi_name = "SearchPage"
    items: list[ModelSummary]
    next_cursor: str | None


class Contribution(ApiModel):
    openapi_name = "Contribution"
    feature: str
    value: float | None
    contribution: float
    text: str  # the fact in words, e.g. "Likes this week are higher than 97 % of models today"


class DailyPoint(ApiModel):
    openapi_name = "DailyPoint"
    snapshot_date: date
    downloads: int
    likes: int
    trending_rank: int | None
    probability: float | None
    model_version: str | None


class ModelDetail(ModelSummary):
    openapi_name = "ModelDetail"
    downloads_all_time: int | None
    last_modified: datetime | None
    model_version: str | None
    label: str | None
    threshold: float | None
    is_pick: bool
    hype_score: float | None
    explanation: list[Contribution]
    features: dict[str, float | None]
    history: list[DailyPoint]
    hub_url: str
    label_text: str | None


class Pick(ApiModel):
    openapi_name = "Pick"
    model_id: str
    pipeline_tag: str | None
    library_name: str | None
    downloads: int
    likes: int
    probability: float
    hype_score: float | None
    snapshot_date: date
    updated_at: datetime


class PicksPage(ApiModel):
    openapi_name = "PicksPage"
    threshold: float
    items: list[Pick]


class Channels(ApiModel):
    openapi_name = "Channels"
    webhook: str | None = None
    email: str | None = None
    digest: bool = False


class WebhookDisabled(ApiModel):
    """Why a watch's webhook was switched off (its receiver answered 410 Gone), and when."""

    openapi_name = "WebhookDisabled"
    url: str
    reason: str
    at: datetime


class Watch(ApiModel):
    openapi_name = "Watch"
    watch_id: str
    kind: WatchKind
    target: str
    name: str | None = None
    threshold: float
    conditions: list[Condition]
    channels: Channels
    scope: Literal["user", "org"]
    paused: bool
    user_id: str
    org_id: str
    created_at: datetime
    updated_at: datetime
    webhook_secret: str | None = None
    webhook_disabled: WebhookDisabled | None = None


class WatchAlert(ApiModel):
    openapi_name = "WatchAlert"
    alert_id: str
    seq: int
    watch_id: str
    model_id: str
    condition: str
    crossing_id: str
    probability: float | None
    previous_probability: float | None
    threshold: float | None
    reason: str
    url: str
    created_at: datetime
    read: bool
    deliveries: dict[str, str]


class AlertPage(ApiModel):
    openapi_name = "AlertPage"
    items: list[WatchAlert]
    next_cursor: str | None
    unread: int


class DeliveryAttempt(ApiModel):
    openapi_name = "DeliveryAttempt"
    alert_id: str
    channel: str
    attempt: int
    at: datetime
    ok: bool
    status: int | None = None
    error: str | None = None


TYPED: tuple[type[ApiModel], ...] = (
    ModelSummary,
    SearchPage,
    Contribution,
    DailyPoint,
    ModelDetail,
    Pick,
    PicksPage,
    Channels,
    WebhookDisabled,
    Watch,
    WatchAlert,
    AlertPage,
    DeliveryAttempt,
)

Deployment = dict[str, Any]  # the deployer's document (untyped in the OpenAPI document)
