"""The topics this service publishes and consumes (see hubpulse_common.topology)."""

from hubpulse_common.events import (
    DayIngested,
    ModelFeatures,
    ModelFeaturesBatch,
    ModelFeaturesPacked,
    ModelSnapshotBatch,
)
from hubpulse_common.topology import Topology

TOPOLOGY = Topology(
    "features",
    publishes=(ModelFeatures, ModelFeaturesBatch, ModelFeaturesPacked),
    consumes=(ModelSnapshotBatch, DayIngested),
)
