"""Request and response models of watches and their alerts: one definition for the gateway, which documents and
validates them, the metrics service, which serves them, and the Python client's drift test."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

WatchKind = Literal["model", "author", "task", "library", "search"]
Condition = Literal["threshold", "picks", "surge", "new_model"]
AlertCondition = Literal["threshold", "picks", "surge", "new_model", "test"]
Scope = Literal["user", "org"]
DeliveryState = Literal["pending", "sent", "failed", "digest", "off"]

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$"
DEFAULT_CONDITIONS: tuple[Condition, ...] = ("threshold", "picks", "surge", "new_model")


class Channels(BaseModel):
    """Where alerts go besides the feed, the live socket and Kafka. `digest`: one message a day instead."""

    model_config = ConfigDict(extra="forbid")

    webhook: HttpUrl | None = Field(default=None, description="POSTed, signed in the Standard Webhooks style")
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    digest: bool = False


class WatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "task",
                    "target": "text-generation",
                    "threshold": 0.45,
                    "conditions": ["threshold", "picks"],
                    "channels": {"webhook": "https://example.com/hooks/hubpulse", "email": "me@example.com"},
                }
            ]
        },
    )

    kind: WatchKind
    target: str = Field(
        min_length=1,
        max_length=500,
        description="A model id, an author, a pipeline tag, a library, or a search's query string "
        "(as GET /v1/models takes it, e.g. `q=llama&task=text-generation&min_downloads=1000`)",
    )
    name: str | None = Field(default=None, max_length=200)
    threshold: float = Field(default=0.45, ge=0.0, le=1.0, description="The trend probability to cross from below")
    conditions: list[Condition] = Field(default=list(DEFAULT_CONDITIONS), min_length=1, max_length=4)
    channels: Channels = Field(default_factory=Channels)
    scope: Scope = Field(default="user", description="'org': shared with every member of your organisation")
    paused: bool = False


class WatchPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    conditions: list[Condition] | None = Field(default=None, min_length=1, max_length=4)
    channels: Channels | None = None
    paused: bool | None = None


class WebhookDisabled(BaseModel):
    url: str
    reason: str
    at: datetime


class Watch(WatchIn):
    watch_id: str
    user_id: str
    org_id: str
    created_at: datetime
    updated_at: datetime
    webhook_secret: str | None = Field(
        default=None, description="Verifies the `webhook-signature` header (owner only; `whsec_...`)"
    )
    webhook_disabled: WebhookDisabled | None = Field(
        default=None,
        description="Set when the receiver answered 410 Gone and the webhook was switched off; cleared by "
        "setting a webhook again",
    )


class WatchAlert(BaseModel):
    alert_id: str
    seq: int = Field(description="Increases with every alert: the feed's cursor and the live socket's clock")
    watch_id: str
    model_id: str
    condition: AlertCondition
    crossing_id: str
    probability: float | None
    previous_probability: float | None
    threshold: float | None
    reason: str
    url: str
    created_at: datetime
    read: bool
    deliveries: dict[str, DeliveryState]


class AlertFeedQuery(BaseModel):
    """The alert feed's query (the gateway's GET /v1/alerts, which forwards it to the metrics service)."""

    watch_id: str | None = Field(default=None, max_length=100)
    unread: bool = False
    cursor: str | None = Field(default=None, max_length=40, description="next_cursor of the previous page")
    limit: int = Field(default=50, ge=1, le=200)


class AlertPage(BaseModel):
    items: list[WatchAlert]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")
    unread: int = Field(description="Unread alerts of the caller (under `watch_id` when given)")


class DeliveryAttempt(BaseModel):
    alert_id: str
    channel: Literal["webhook", "email", "kafka"]
    attempt: int
    at: datetime
    ok: bool
    status: int | None = None
    error: str | None = None
