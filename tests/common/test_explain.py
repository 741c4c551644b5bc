"""Explanations read as sentences: every feature has one, for any value it can take."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hubpulse_common.explain import HORIZON_DAYS, SENTENCES, label_sentence, sentence
from hubpulse_common.features import FEATURE_COLUMNS, SURGE_MIN_DELTA, SURGE_RATIO, TOP_K
from hubpulse_scorer.model.labels import LabelConfig

VALUES = [0.0, 0.5, 0.998, 1.0, 3.0, -2.0, 12.7, -0.4, 1234.0, 2.5e6, None, math.nan, math.inf]


def test_every_feature_has_a_sentence() -> None:
    assert set(FEATURE_COLUMNS) <= set(SENTENCES)


@pytest.mark.parametrize("feature", FEATURE_COLUMNS)
def test_sentences_render_any_value_without_raw_names_or_nan(feature: str) -> None:
    rng = np.random.default_rng(0)
    for value in [*VALUES, *rng.normal(0, 50, 20).tolist()]:
        text = sentence(feature, value)
        assert text
        assert text[0].isupper() or text[0] in "#+-0123456789", text
        assert feature not in text, text
        for word in ("nan", "inf", "null", "undefined"):
            assert word not in text, (feature, value, text)
        assert "None" not in text.replace("None of", ""), (feature, value, text)


def test_examples_read_as_people_expect() -> None:
    assert sentence("day_pct_log_downloads", 0.998) == "Downloads over 30 days are higher than 99.8 % of models today"
    assert sentence("trending_rank", None) == "Not on the Hub's trending list today"
    assert sentence("rank_change_7d", 4.0) == "Up 4 places on the trending list in a week"
    assert sentence("likes_7d", 420.0) == "+420 likes this week"
    assert sentence("age_days", None).startswith("Creation date unknown")


def test_label_words_match_the_models_label_definition() -> None:
    config = LabelConfig()
    assert (
        config.horizon,
        config.top_k,
        config.surge_ratio,
        config.surge_min_delta,
    ) == (HORIZON_DAYS, TOP_K, SURGE_RATIO, SURGE_MIN_DELTA)
    assert label_sentence("trending") == "trending: enters the Hub's trending top 10 within 7 days"
    assert "2x" in label_sentence("surge")
