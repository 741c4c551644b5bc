"""Request and response shapes of the catalog routes (search, detail, picks); the OpenAPI document uses them."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from hubpulse_common.explain import label_sentence, sentence
from hubpulse_common.history import known_created_at


class SortKey(StrEnum):
    trend = "trend"
    downloads = "downloads"
    likes = "likes"
    growth = "growth"
    created = "created"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelSummary(_Out):
    model_id: str
    author: str | None
    pipeline_tag: str | None
    library_name: str | None
    tags: list[str]
    created_at: datetime | None = Field(
        description="Null when unknown (the Hub's placeholder for repos before 2022-03)"
    )
    snapshot_date: date
    downloads: int = Field(description="Downloads over the last 30 days")
    likes: int
    trending_rank: int | None
    growth_7d: float | None
    probability: float | None = Field(description="Trend probability from the latest score, if scored")

    @field_validator("created_at")
    @classmethod
    def _known(cls, value: datetime | None) -> datetime | None:
        return known_created_at(value)


class SearchPage(_Out):
    items: list[ModelSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class Contribution(_Out):
    feature: str
    value: float | None
    contribution: float = Field(description="Signed push on the score, in log-odds")

    @computed_field(description="The fact the model read, in words (e.g. 'Likes this week are higher than 97 % ...')")
    def text(self) -> str:
        return sentence(self.feature, self.value)


class DailyPoint(_Out):
    snapshot_date: date
    downloads: int
    likes: int
    trending_rank: int | None
    probability: float | None
    model_version: str | None


class ModelDetail(ModelSummary):
    downloads_all_time: int | None
    last_modified: datetime | None
    model_version: str | None
    label: str | None = Field(description="What `probability` is of: 'trending' or 'surge'")
    threshold: float | None
    is_pick: bool = Field(description="probability >= the model version's operating threshold")
    hype_score: float | None = Field(description="0-100: geometric mean of probability and recent-likes share")
    explanation: list[Contribution]
    features: dict[str, float | None]
    history: list[DailyPoint] = Field(description="One point per day, oldest first")
    hub_url: str = Field(description="The model's page on the Hugging Face Hub")

    @computed_field(description="What `probability` is the probability of, in words; null when unscored")
    def label_text(self) -> str | None:
        return None if self.label is None else label_sentence(self.label)


class Deployability(_Out):
    """The deployer's answer for a repo: whether its model server (targets local and kubernetes) can serve it."""

    model_id: str
    revision: str
    deployable: bool
    code: str | None = Field(
        description="Why not, as a code: not_servable (no weights its runtime loads), unsupported_task, "
        "model_too_large, model_not_public, gated_model, unknown_model, unknown_revision, hub_refused"
    )
    reason: str | None = Field(description="Why not, in a sentence; null when deployable")
    task: str | None
    runtime: str | None = Field(description="The runtime that would serve it: onnx or torch")
    download_bytes: int | None = Field(description="What a deployment downloads, when the Hub says")


class Pick(_Out):
    model_id: str
    pipeline_tag: str | None
    library_name: str | None
    downloads: int
    likes: int
    probability: float
    hype_score: float | None
    snapshot_date: date
    updated_at: datetime


class PicksPage(_Out):
    threshold: float
    items: list[Pick]


class ErrorDetail(_Out):
    code: str
    message: str


class ErrorBody(_Out):
    error: ErrorDetail
