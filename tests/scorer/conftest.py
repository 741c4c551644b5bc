"""A small trained model shared by the scorer tests (trained once: seconds, not per test)."""

from __future__ import annotations

import pytest

from hubpulse_scorer.bootstrap import train_bootstrap
from hubpulse_scorer.model.artifact import TrainedModel


@pytest.fixture(scope="session")
def challenger() -> TrainedModel:
    return train_bootstrap(1500, 50, seed=7)
