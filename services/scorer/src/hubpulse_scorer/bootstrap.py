"""The bootstrap model: so that a fresh deployment scores from its first snapshot.

When the registry has no current version, the scorer trains one on a small synthetic Hub (seconds) with
the trend model's own training code, registers it and promotes it. `hubpulse train` replaces it later.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from hubpulse_common.logging import get_logger
from hubpulse_common.synthetic import SyntheticHub, typed_days
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.model.labels import LabelConfig
from hubpulse_scorer.model.training import TrainConfig, train_from_history
from hubpulse_scorer.registry import ModelRegistry, Pointer

log = get_logger(__name__)

# A small Hub has few trending slots worth predicting; ranking 100 keeps enough positives to train on.
_TRENDING_SIZE = 100


def train_bootstrap(n_models: int, days: int, seed: int) -> TrainedModel:
    hub = SyntheticHub(n_models, days, seed=seed, trending_size=_TRENDING_SIZE)
    history = pd.concat(list(typed_days(hub)), ignore_index=True)
    history["model_id"] = history["model_id"].astype(str)
    config = TrainConfig(labels=LabelConfig(label="trending"), seed=seed, n_rounds=100)
    model = train_from_history(history, config)
    source = {"bootstrap": True, "synthetic_models": n_models, "synthetic_days": days, "seed": seed}
    model.metadata = replace(model.metadata, extra={**model.metadata.extra, **source})
    return model


def ensure_current(registry: ModelRegistry, n_models: int, days: int, seed: int) -> Pointer:
    """The registry's current pointer; trains, registers and promotes the bootstrap model when there is none."""
    current = registry.current()
    if current is not None:
        return current
    log.info("scorer.bootstrap_training", models=n_models, days=days)
    entry = registry.register(train_bootstrap(n_models, days, seed))
    log.info("scorer.bootstrap_registered", version=entry.version)
    return registry.promote(entry.version)
