"""The topics this service publishes and consumes (see hubpulse_common.topology)."""

from hubpulse_common.events import (
    AlertEvent,
    DeploymentEvent,
    InferenceEvent,
    ModelFeaturesPacked,
    ModelScoresBatch,
    WatchAlertEvent,
)
from hubpulse_common.topology import Topology

TOPOLOGY = Topology(
    "metrics",
    publishes=(AlertEvent, WatchAlertEvent),
    consumes=(InferenceEvent, DeploymentEvent, ModelFeaturesPacked, ModelScoresBatch),
)
