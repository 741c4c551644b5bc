"""Settings of the scorer service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ConsumerSettings


class ScorerSettings(ConsumerSettings, service="scorer", port=8004):
    # hub.features.v2 messages a batch takes (each up to FEATURES_BATCH_ROWS = 500 model-days): ~5,000 model-days
    batch_size: int = 10
    # How often the registry's current pointer is checked for a promotion or rollback.
    model_poll_s: float = 3.0
    top_features: int = 5
    # Each score is published on hub.scores.v2 (many a message), and on hub.scores.v1 (one message a score) while
    # this is on: on through the dual-publishing window that the event contract promises (CHANGELOG.md: until
    # 2027-01-06 at the earliest), for consumers that have not moved to v2 yet. Off saves 2-3 % of a day's CPU.
    scores_publish_v1: bool = True
    # Explained when their day is swapped in: the first models of each search sort (5 sorts; a search page holds
    # 20 to 100). Other non-picks are explained when their detail is first read (docs/decisions/pipeline-redesign.md).
    explain_top_n: int = 1000
    # The day's catalog is swapped in once every model-day is scored (the features close says how many), or
    # once no batch of it arrived for this long (a day whose size is unknown, or that lost rows to the DLQ).
    catalog_swap_idle_s: float = 30.0
    catalog_swap_check_s: float = 1.0
    # A model older than this is due for retraining (alert HubpulseTrendModelStale, deploy/prometheus).
    model_retrain_period_s: float = 7 * 86400
    # The bootstrap model (trained when the registry is empty): a small synthetic Hub, seconds to train.
    bootstrap_models: int = 2000
    bootstrap_days: int = 60
    bootstrap_seed: int = 0
