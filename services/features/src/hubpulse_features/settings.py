"""Settings of the features service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ConsumerSettings


class FeaturesSettings(ConsumerSettings, service="features", port=8003):
    # Big polls for features: each batch costs one history read and one COPY, whatever its size. It counts
    # hub.snapshots.v2 messages (up to 1,000 models each): ~5,000 model-days a batch when the ingestor writes big
    # batches.
    batch_size: int = 5
    # A day is closed (cross-sectional features over its whole population) once it has streamed as many models as
    # the ingestor's day-complete signal (hub.ingest.v1) announced, or, a day without a signal, when a later day
    # arrives; where neither comes (a count never reached, or no later day), when no snapshot of it has arrived
    # for this long.
    day_close_idle_s: float = 20.0
    day_close_check_s: float = 2.0
    # The close publishes each day's final features on hub.features.v3 (many model-days a message, the features
    # packed). True also publishes them on hub.features.v1, one message per model-day, for consumers not yet moved.
    features_publish_v1: bool = False
    # True also publishes them on hub.features.v2 (as v3, the features as JSON numbers), for consumers not yet moved
    # to v3 (turn it on before upgrading the features service, off once every consumer reads v3).
    features_publish_v2: bool = False
