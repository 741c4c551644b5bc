"""Response models of the ingestor's HTTP routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel


class Cycle(BaseModel):
    cycle_id: int
    source: str
    status: str  # running | completed | completed_with_errors | expired (its day passed before it finished)
    snapshot_date: dt.date | None
    next_url: str | None
    pages: int
    models: int
    retries: int
    resumes: int
    failed_pages: list[dict[str, Any]]
    error: str | None
    started_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    listed: int  # items the Hub listed
    skipped: dict[str, int]  # items not stored, by reason (private, duplicate, likes_out_of_range, ...)
    cleaned: dict[str, int]  # items stored after cleaning, by what was cleaned
    renamed: int
