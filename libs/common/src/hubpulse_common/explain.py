"""A score's explanation in words: one sentence per feature, for the web app, alerts and API clients.

`sentence(feature, value)` states the fact the model read (e.g. "Downloads over 30 days are higher than
99.8 % of models today"); how hard it pushed the probability, and which way, is the contribution beside
it (the web app draws it as a bar). Every feature in FEATURE_COLUMNS has a sentence (a test checks it), so a
new feature cannot reach a user as a raw column name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from hubpulse_common.features import SURGE_MIN_DELTA, SURGE_RATIO, TOP_K

Describe = Callable[[float], str]
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _n(value: float) -> str:
    """A count for people: 1,234 / 12.3K / 4.5M."""
    v = abs(value)
    sign = "-" if value < 0 else ""
    if v >= 1e6:
        return f"{sign}{v / 1e6:.1f}M"
    if v >= 1e4:
        return f"{sign}{v / 1e3:.1f}K"
    return f"{sign}{v:,.0f}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "") + _n(value)


def _pct(fraction: float) -> str:
    text = f"{fraction * 100:.1f}".removesuffix(".0")
    return f"{text} %"


def _growth(fraction: float) -> str:
    return ("+" if fraction >= 0 else "") + _pct(fraction)


def _days(value: float) -> str:
    n = round(value)
    return f"{n} day" if n == 1 else f"{n} days"


def _rank_move(value: float, span: str) -> str:
    places = round(value)
    if places == 0:
        return f"No change in trending rank {span}"
    plural = "s" if abs(places) != 1 else ""
    return f"{'Up' if places > 0 else 'Down'} {abs(places)} place{plural} on the trending list {span}"


def _log_rank_move(value: float, span: str) -> str:
    factor = math.exp(value)
    if abs(value) < 0.01:
        return f"Same trending rank as {span}"
    if factor >= 1:
        return f"Trending rank {factor:.1f}x better than {span}"
    return f"Trending rank {1 / factor:.1f}x worse than {span}"


def _percentile(subject: str, population: str) -> Describe:
    return lambda v: f"{subject} higher than {_pct(v)} of {population}"


_DAY_PCT: dict[str, str] = {
    "log_downloads": "Downloads over 30 days are",
    "lag_1_delta": "Yesterday's rise in downloads is",
    "growth_rate_7d": "Download growth over 7 days is",
    "likes_7d": "Likes this week are",
    "likes_velocity_3d": "The pace of new likes is",
    "trend_score_proxy": "Recent likes (what the Hub's trending list weighs) are",
    "inc_7d_run_rate": "This week's download pace is",
}
_TASK_PCT: dict[str, str] = {
    "log_downloads": "Downloads over 30 days are",
    "growth_rate_7d": "Download growth over 7 days is",
    "likes_7d": "Likes this week are",
}


def _log_count(value: float) -> str:
    """A count the features store as log1p."""
    return _n(math.expm1(value))


def _rank(value: float) -> str:
    return str(round(value))


def _times(value: float) -> str:
    return f"{value:.2f}"


def _phrases(describe: Describe, templates: dict[str, str]) -> dict[str, Describe]:
    """Features whose sentence is a template around one formatted value (`{}`)."""
    return {feature: partial(_fill, template, describe) for feature, template in templates.items()}


def _fill(template: str, describe: Describe, value: float) -> str:
    return template.format(describe(value))


SENTENCES: dict[str, Describe] = {
    **_phrases(
        _log_count,
        {
            "log_downloads": "{} downloads over the last 30 days",
            "log_likes": "{} likes in all",
            "log_downloads_all_time": "{} downloads since it was created",
            "task_log_models": "Its task has {} models",
            "author_log_models": "Its author has {} models",
            "author_log_downloads": "Its author's models have {} downloads over 30 days",
        },
    ),
    **_phrases(
        _n,
        {
            "delta_downloads_24h": "{} downloads in the last 24 hours",
            "rolling_mean_7": "30-day downloads averaged {} over the last week",
            "trend_score_proxy": "Recent-likes score of {} (this week's likes, the last 2 days twice)",
            "inc_7d": "{} downloads in the last 7 days",
        },
    ),
    **_phrases(
        _signed,
        {
            "lag_1_delta": "30-day downloads changed by {} since yesterday",
            "delta_7d": "30-day downloads changed by {} in a week",
            "likes_1d": "{} likes since yesterday",
            "likes_7d": "{} likes this week",
            "likes_2d": "{} likes in the last 2 days",
            "likes_13d": "{} likes over the last 13 days",
            "author_likes_7d": "Its author's models gained {} likes this week",
        },
    ),
    **_phrases(
        _growth,
        {
            "lag_1_growth": "30-day downloads grew {} since yesterday",
            "growth_rate_7d": "30-day downloads grew {} in a week",
            "likes_growth_7d": "Likes grew {} this week",
            "author_max_growth_7d": "Its author's fastest-growing model grew {} in a week",
        },
    ),
    **_phrases(
        _days,
        {
            "days_observed_14d": "Seen on {} of the last 14",
            "days_since_prev_obs": "Last seen before today {} ago",
            "days_ranked_7d": "On the trending list {} of the last 7",
            "days_top10_14d": "In the trending top 10 on {} of the last 14",
            "days_top25_14d": "In the trending top 25 on {} of the last 14",
            "age_days": "Created {} ago",
        },
    ),
    **_phrases(
        _rank,
        {
            "trending_rank": "#{} on the Hub's trending list today",
            "best_rank_7d": "Best trending rank this week: #{}",
            "best_rank_14d": "Best trending rank in 14 days: #{}",
            "mean_rank_7d": "Average trending rank this week: #{}",
            "author_best_rank": "Its author's best trending rank today: #{}",
            "day_order_trend_score": "#{} of all models today by recent likes",
            "likes_decay_order": "#{} of all models today by recent likes, newest weighted most",
        },
    ),
    **_phrases(
        _times,
        {
            "downloads_vs_mean_7": "Downloads are {}x their average of the last week",
            "inc_7d_run_rate": "This week's downloads, kept up for 30 days, would be {}x the current count",
            "inc_3d_run_rate": "The last 3 days' downloads, kept up for 30 days, would be {}x the current count",
            "proj_ratio_3d": "At the last 3 days' pace, 30-day downloads would be {}x in a week",
            "proj_ratio_7d": "At this week's pace, 30-day downloads would be {}x in a week",
        },
    ),
    "likes_velocity_3d": lambda v: f"{v:.1f} new likes a day over the last 3 days",
    "likes_acceleration": lambda v: (
        f"New likes are coming {abs(v):.1f} a day {'faster' if v >= 0 else 'slower'} than the 3 days before"
    ),
    "rank_change_1d": lambda v: _rank_move(v, "since yesterday"),
    "rank_change_3d": lambda v: _rank_move(v, "in 3 days"),
    "rank_change_7d": lambda v: _rank_move(v, "in a week"),
    "log_rank_gain_1d": lambda v: _log_rank_move(v, "yesterday"),
    "log_rank_gain_3d": lambda v: _log_rank_move(v, "3 days ago"),
    "log_rank_gain_7d": lambda v: _log_rank_move(v, "a week ago"),
    "likes_decay_3d": lambda v: f"Recent likes, newest weighted most: {v:.0f}",
    "window_share": lambda v: f"{_pct(min(v, 1.0))} of all its downloads came in the last 30 days",
    "leave_share_7d": lambda v: f"{_pct(min(v, 1.0))} of the 30-day count leaves the window within a week",
    "surge_gap_1d": lambda v: _surge(v, "yesterday's"),
    "surge_gap_3d": lambda v: _surge(v, "the last 3 days'"),
    "surge_gap_7d": lambda v: _surge(v, "this week's"),
    "rate_accel_1d_7d": lambda v: f"Yesterday's downloads ran at {math.exp(v):.1f}x the week's daily pace",
    "day_of_week": lambda v: f"Observed on a {_WEEKDAYS[round(v) % 7]}",
    **{f"day_pct_{c}": _percentile(subject, "models today") for c, subject in _DAY_PCT.items()},
    **{f"task_pct_{c}": _percentile(subject, "models of its task today") for c, subject in _TASK_PCT.items()},
    "author_max_surge_gap": lambda v: (
        "One of its author's models is on course to surge"
        if v > 0
        else "None of its author's models is on course to surge"
    ),
    "likes_decay_gap_top10": lambda v: _gap(v, f"the day's top {TOP_K} by recent likes"),
    "likes_decay_gap_rank10": lambda v: _gap(v, f"the model at trending #{TOP_K}"),
    "likes_catchup_top10": lambda v: (
        f"At this pace, a week of likes would close {_pct(min(v, 9.99))} of the gap to the day's top {TOP_K}"
    ),
}

MISSING: dict[str, str] = {
    "trending_rank": "Not on the Hub's trending list today",
    "best_rank_7d": "Not on the trending list this week",
    "best_rank_14d": "Not on the trending list in 14 days",
    "mean_rank_7d": "Not on the trending list this week",
    "author_best_rank": "None of its author's models is on the trending list today",
    "age_days": "Creation date unknown (older than the Hub's records)",
    "delta_downloads_24h": "No all-time download count to compare with yesterday's",
    "log_downloads_all_time": "The Hub gives no all-time download count",
}


def _surge(gap: float, pace: str) -> str:
    if gap > 0:
        return f"At {pace} pace, downloads would surge ({SURGE_RATIO:g}x and +{_n(SURGE_MIN_DELTA)} within a week)"
    return f"At {pace} pace, downloads stay short of a surge"


def _gap(log_gap: float, reference: str) -> str:
    if log_gap >= 0:
        return f"Recent likes at or above {reference}"
    return f"Recent likes at {_pct(math.exp(log_gap))} of {reference}"


# The trend model's horizon (the scorer's LabelConfig.horizon): what a probability is about, in words.
HORIZON_DAYS = 7


def label_sentence(label: str, horizon_days: int = HORIZON_DAYS) -> str:
    """What a score's probability is of, e.g. "trending: enters the Hub's top 10 within 7 days"."""
    if label == "trending":
        return f"trending: enters the Hub's trending top {TOP_K} within {horizon_days} days"
    if label == "surge":
        return (
            f"surge: 30-day downloads at least {SURGE_RATIO:g}x, and at least +{_n(SURGE_MIN_DELTA)}, "
            f"within {horizon_days} days"
        )
    return f"{label}, within {horizon_days} days"


def sentence(feature: str, value: float | None) -> str:
    """The fact behind one feature's value, in words; a feature this module does not know gets its name."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING.get(feature, f"{_label(feature)}: not known yet")
    describe = SENTENCES.get(feature)
    try:
        if describe is not None:
            return describe(float(value))
    except (OverflowError, ValueError):  # a value far outside what the feature produces (e.g. exp of 1000)
        pass
    return f"{_label(feature)}: {value:.3g}"


def _label(feature: str) -> str:
    return feature.replace("_", " ").capitalize()
