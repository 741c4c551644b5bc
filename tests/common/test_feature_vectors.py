"""Feature vectors (the catalog's stored features): each row's values back under its names, missing as None,
and a key that only the names and their order decide."""

from __future__ import annotations

import numpy as np
import pytest

from hubpulse_common import feature_vectors
from hubpulse_common.feature_vectors import FeatureSet


def test_rows_come_back_under_their_names_with_non_finite_values_missing() -> None:
    names = ("a", "b", "c")
    matrix = np.array([[0.1, np.nan, -np.inf], [5e-324, 1.7976931348623157e308, -0.0]])
    first, second = feature_vectors.encode(matrix)
    assert len(first) == len(second) == 3 * 8
    assert feature_vectors.decode(first, names) == {"a": 0.1, "b": None, "c": None}
    assert feature_vectors.decode(second, names) == {"a": 5e-324, "b": 1.7976931348623157e308, "c": -0.0}
    assert first[:8] == np.array([0.1], dtype=">f8").tobytes()  # big-endian, as float8send writes it


def test_a_vector_read_against_the_wrong_names_is_refused() -> None:
    (vector,) = feature_vectors.encode(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="2 values for 3 feature names"):
        feature_vectors.decode(vector, ("a", "b", "c"))


def test_the_key_of_a_set_is_its_names_in_order() -> None:
    assert FeatureSet(("a", "b")).key == FeatureSet(("a", "b")).key
    assert FeatureSet(("a", "b")).key != FeatureSet(("b", "a")).key
    assert FeatureSet(("ab",)).key != FeatureSet(("a", "b")).key


def test_no_features_give_empty_vectors() -> None:
    assert feature_vectors.encode(np.empty((2, 0))) == [b"", b""]
    assert feature_vectors.decode(b"", ()) == {}
