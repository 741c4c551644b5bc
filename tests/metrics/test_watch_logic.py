"""The watches' pure logic: saved searches, crossings, surges, reasons in words, messages."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from hubpulse_common.events import Contribution
from hubpulse_metrics.watches import service
from hubpulse_metrics.watches.service import ModelFacts, Reading

FACTS = ModelFacts(
    "Qwen/Qwen3-0.6B",
    author="Qwen",
    pipeline_tag="text-generation",
    library_name="transformers",
    tags=("qwen3", "safetensors"),
    downloads=8000,
    likes=800,
)


def reading(probability: float, before: float | None, **extra: object) -> Reading:
    values: dict[str, object] = {
        "model_id": "m",
        "snapshot_date": date(2026, 12, 3),
        "label": "trending",
        "probability": probability,
        "operating_threshold": 0.38,
        "previous_probability": before,
        "previous_operating_threshold": 0.38,
    }
    values.update(extra)
    return Reading(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("q=qwen3", True),
        ("q=qwen llama", False),
        ("task=text-generation&library=transformers", True),
        ("task=image-classification", False),
        ("min_downloads=9000", False),
        ("max_downloads=9000&min_likes=800&sort=likes&limit=5", True),
    ],
)
def test_saved_search_matches_like_the_catalog_filters(query: str, matches: bool) -> None:
    assert service.parse_search(query).matches(FACTS) is matches


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "at least one filter"),
        ("sort=likes", "at least one filter"),
        ("colour=red", "unknown search filter"),
        ("min_likes=-1", "must not be negative"),
        ("min_downloads=1e3", "not a whole number"),
    ],
)
def test_a_saved_search_without_filters_or_with_unknown_ones_is_refused(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        service.parse_search(query)


def test_author_watch_falls_back_to_the_namespace_and_ignores_case() -> None:
    assert service.watch_matches("author", "qwen", FACTS)
    assert service.watch_matches("author", "acme", ModelFacts("acme/x"))
    assert not service.watch_matches("task", "text-generation", ModelFacts("acme/x"))


def test_crossing_from_below_only() -> None:
    conditions = ["threshold", "picks"]
    assert [f.condition for f in service.fired(conditions, 0.45, reading(0.5, 0.3))] == ["threshold", "picks"]
    assert service.fired(conditions, 0.45, reading(0.5, 0.46)) == []  # stayed above: no repeat
    assert service.fired(conditions, 0.45, reading(0.5, None)) == []  # no earlier score: nothing was crossed
    assert [f.condition for f in service.fired(conditions, 0.45, reading(0.4, 0.3))] == ["picks"]
    crossing = service.fired(["threshold"], 0.45, reading(0.5, 0.3))[0]
    assert crossing.crossing_id == "trending:2026-12-03"


def test_surge_needs_both_doubling_and_a_thousand_more() -> None:
    assert service.is_surge(2000, 1000)
    assert not service.is_surge(1800, 850)  # doubled, but only +950
    assert not service.is_surge(5000, 4000)  # +1000, not doubled
    assert not service.is_surge(5000, None)
    fired = service.fired(["surge"], 0.45, reading(0.1, 0.1, surge=True, surge_before=False))
    assert [f.condition for f in fired] == ["surge"]
    assert service.fired(["surge"], 0.45, reading(0.1, 0.1, surge=True, surge_before=True)) == []


def test_new_model_is_first_seen_soon_after_creation() -> None:
    young = ModelFacts("a/b", created_at=datetime(2026, 11, 30, tzinfo=UTC), first_seen=date(2026, 12, 3))
    assert service.new_model(young, date(2026, 12, 3))
    assert not service.new_model(young, date(2026, 12, 4))
    old = ModelFacts("a/b", created_at=datetime(2025, 1, 1, tzinfo=UTC), first_seen=date(2026, 12, 3))
    assert not service.new_model(old, date(2026, 12, 3))


def test_reason_speaks_of_what_pushed_the_score_up() -> None:
    top = [
        Contribution(feature="day_pct_log_downloads", value=0.998, contribution=2.29),
        Contribution(feature="age_days", value=400.0, contribution=-0.5),
        Contribution(feature="likes_7d", value=64.0, contribution=0.4),
        Contribution(feature="rank_change_7d", value=-1.0, contribution=0.7),
    ]
    assert service.reason("threshold", None, top) == (
        "Its trend probability crossed your threshold. Downloads over 30 days are higher than 99.8 % of models "
        "today. Down 1 place on the trending list in a week. +64 likes this week."
    )


def test_alert_ids_are_stable_and_distinct() -> None:
    one = service.alert_id("w", "m", "threshold", "trending:2026-12-03")
    assert one == service.alert_id("w", "m", "threshold", "trending:2026-12-03")
    assert one != service.alert_id("w", "m", "threshold", "trending:2026-12-04")


def test_messages_escape_and_link() -> None:
    alert = {
        "model_id": "a/<b>",
        "condition": "threshold",
        "probability": 0.62,
        "previous_probability": 0.3,
        "reason": "R & D",
        "url": "https://x/models/a/%3Cb%3E",
    }
    html = service.email_html([alert], "https://x/unsub?token=t")
    assert "a/&lt;b&gt;" in html
    assert "R &amp; D" in html
    assert 'href="https://x/unsub?token=t"' in html
    text = service.email_text([alert], "https://x/unsub?token=t")
    assert "30.0 % -> 62.0 % (+32.0 points)" in text
    assert text.rstrip().endswith("https://x/unsub?token=t")
    assert service.model_url("https://hub.example/", "a/b c") == "https://hub.example/models/a/b%20c"
