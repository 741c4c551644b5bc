"""Watches as plain functions on plain data: which watches a model falls under, which conditions fired on a
score, the reason in words, and the messages sent."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote

from hubpulse_common import explain
from hubpulse_common.events import Contribution

SURGE_FACTOR = 2.0  # downloads doubled...
SURGE_MIN_GAIN = 1000  # ...and at least this many more, over SURGE_DAYS
SURGE_DAYS = 7
NEW_MODEL_DAYS = 7  # a model first seen within this many days of its creation is "new"

# The filters of GET /v1/models a saved search may hold; paging and sorting say nothing about membership.
SEARCH_FILTERS = frozenset({"q", "task", "library", "min_downloads", "max_downloads", "min_likes"})
SEARCH_IGNORED = frozenset({"sort", "cursor", "limit"})
INT_FILTERS = ("min_downloads", "max_downloads", "min_likes")


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What the metrics service knows of a model from `hub.features.v3`."""

    model_id: str
    author: str | None = None
    pipeline_tag: str | None = None
    library_name: str | None = None
    tags: tuple[str, ...] = ()
    downloads: int | None = None
    likes: int | None = None
    created_at: datetime | None = None
    first_seen: date | None = None

    @property
    def owner(self) -> str:
        """The author, or the namespace of the id when the Hub gave none."""
        return self.author or self.model_id.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class SearchFilter:
    terms: tuple[str, ...] = ()
    task: str | None = None
    library: str | None = None
    min_downloads: int | None = None
    max_downloads: int | None = None
    min_likes: int | None = None

    def matches(self, facts: ModelFacts) -> bool:
        haystack = " ".join((facts.model_id, facts.owner, *facts.tags)).lower()
        if any(term not in haystack for term in self.terms):
            return False
        if self.task is not None and facts.pipeline_tag != self.task:
            return False
        if self.library is not None and facts.library_name != self.library:
            return False
        downloads, likes = facts.downloads or 0, facts.likes or 0
        return not (
            (self.min_downloads is not None and downloads < self.min_downloads)
            or (self.max_downloads is not None and downloads > self.max_downloads)
            or (self.min_likes is not None and likes < self.min_likes)
        )


def parse_search(query: str) -> SearchFilter:
    """A saved search's query string; ValueError naming what is wrong (an unknown filter, a bad number)."""
    values = parse_qs(query.lstrip("?"), keep_blank_values=False, strict_parsing=False, max_num_fields=20)
    unknown = set(values) - SEARCH_FILTERS - SEARCH_IGNORED
    if unknown:
        raise ValueError(f"unknown search filter(s): {', '.join(sorted(unknown))}")
    one = {k: v[-1].strip() for k, v in values.items() if k in SEARCH_FILTERS}
    numbers: dict[str, int] = {}
    for name in INT_FILTERS:
        if name in one:
            try:
                numbers[name] = int(one[name])
            except ValueError:
                raise ValueError(f"{name}: not a whole number") from None
            if numbers[name] < 0:
                raise ValueError(f"{name}: must not be negative")
    search = SearchFilter(
        terms=tuple(dict.fromkeys(one.get("q", "").lower().split())),
        task=one.get("task") or None,
        library=one.get("library") or None,
        **numbers,
    )
    if search == SearchFilter():
        raise ValueError("a saved search needs at least one filter (q, task, library, min_downloads, ...)")
    return search


def watch_matches(kind: str, target: str, facts: ModelFacts) -> bool:
    if kind == "model":
        return facts.model_id == target
    if kind == "author":
        return facts.owner.lower() == target.lower()
    if kind == "task":
        return facts.pipeline_tag == target
    if kind == "library":
        return facts.library_name == target
    return parse_search(target).matches(facts)


def is_surge(downloads_now: int | None, downloads_before: int | None) -> bool:
    if downloads_now is None or downloads_before is None:
        return False
    return downloads_now >= SURGE_FACTOR * downloads_before and downloads_now - downloads_before >= SURGE_MIN_GAIN


@dataclass(frozen=True, slots=True)
class Reading:
    """One score of a model and what came before it: all a watch's conditions are judged on."""

    model_id: str
    snapshot_date: date
    label: str
    probability: float
    operating_threshold: float
    previous_probability: float | None
    previous_operating_threshold: float | None
    surge: bool = False
    surge_before: bool = False
    new_model: bool = False
    top_features: Sequence[Contribution] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Firing:
    condition: str
    crossing_id: str


def _crossed(before: float | None, now: float, threshold: float) -> bool:
    """Up through the threshold since the previous score; no previous score is no crossing (nothing to cross)."""
    return before is not None and before < threshold <= now


def fired(conditions: Iterable[str], threshold: float, reading: Reading) -> list[Firing]:
    """The conditions of a watch this reading sets off, each with the id that makes its crossing distinct."""
    day = reading.snapshot_date.isoformat()
    out = []
    for condition in conditions:
        if (condition == "threshold" and _crossed(reading.previous_probability, reading.probability, threshold)) or (
            condition == "picks"
            and _crossed(reading.previous_probability, reading.probability, reading.operating_threshold)
        ):
            out.append(Firing(condition, f"{reading.label}:{day}"))
        elif condition == "surge" and reading.surge and not reading.surge_before:
            out.append(Firing(condition, day))
        elif condition == "new_model" and reading.new_model:
            out.append(Firing(condition, "first"))
    return out


def alert_id(watch_id: str, model_id: str, condition: str, crossing_id: str) -> str:
    """Deterministic, so the same crossing always names the same alert (receivers may dedupe on it)."""
    digest = hashlib.sha256("\x1f".join((watch_id, model_id, condition, crossing_id)).encode()).hexdigest()
    return f"wal_{digest[:20]}"


def reason(condition: str, reading: Reading | None, top_features: Sequence[Contribution], limit: int = 3) -> str:
    """Why the alert fired, in sentences: the condition, then the features that pushed the score up."""
    head = {
        "threshold": "Its trend probability crossed your threshold.",
        "picks": "It entered the AI picks.",
        "surge": f"Its downloads doubled (and grew by {SURGE_MIN_GAIN:,} or more) in {SURGE_DAYS} days.",
        "new_model": "A new model by an author you watch.",
        "test": "A test alert: your watch's channels work.",
    }[condition]
    pushing = sorted((f for f in top_features if f.contribution > 0), key=lambda f: -f.contribution)[:limit]
    return " ".join([head, *(f"{explain.sentence(f.feature, f.value)}." for f in pushing)])


def model_url(public_url: str, model_id: str) -> str:
    return f"{public_url.rstrip('/')}/models/{quote(model_id, safe='/')}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def subject(alerts: Sequence[dict[str, Any]]) -> str:
    if len(alerts) == 1:
        a = alerts[0]
        return f"hubpulse: {a['model_id']} ({a['condition'].replace('_', ' ')}, {_percent(a.get('probability'))})"
    return f"hubpulse: {len(alerts)} alerts from your watches"


def _change(a: dict[str, Any]) -> str:
    before, now = a.get("previous_probability"), a.get("probability")
    if before is None or now is None:
        return _percent(now)
    return f"{_percent(before)} -> {_percent(now)} ({(now - before) * 100:+.1f} points)"


def email_text(alerts: Sequence[dict[str, Any]], unsubscribe_url: str) -> str:
    blocks = [
        "\n".join(
            (
                f"{a['model_id']}: {a['condition'].replace('_', ' ')}",
                f"Trend probability: {_change(a)}",
                a["reason"],
                a["url"],
            )
        )
        for a in alerts
    ]
    return "\n\n".join([*blocks, f"Stop these e-mails: {unsubscribe_url}"]) + "\n"


def email_html(alerts: Sequence[dict[str, Any]], unsubscribe_url: str) -> str:
    e = html.escape
    items = "".join(
        f'<li><a href="{e(a["url"])}"><b>{e(a["model_id"])}</b></a> — {e(a["condition"].replace("_", " "))}<br>'
        f"Trend probability: {e(_change(a))}<br>{e(a['reason'])}</li>"
        for a in alerts
    )
    return (
        f"<html><body><ul>{items}</ul>"
        f'<p><a href="{e(unsubscribe_url)}">Unsubscribe from these e-mails</a></p></body></html>'
    )


def new_model(facts: ModelFacts, day: date) -> bool:
    """First seen on this day, and created within NEW_MODEL_DAYS of it."""
    if facts.first_seen != day or facts.created_at is None:
        return False
    return day - facts.created_at.date() <= timedelta(days=NEW_MODEL_DAYS)
