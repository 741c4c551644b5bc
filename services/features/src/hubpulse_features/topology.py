"""The topics this service publishes and consumes (see hubpulse_common.topology)."""

from hubpulse_common.events import DayIngested, ModelFeatures, ModelFeaturesBatch, ModelSnapshotBatch
from hubpulse_common.topology import Topology

TOPOLOGY = Topology(
    "features",
    publishes=(ModelFeatures, ModelFeaturesBatch),
    consumes=(ModelSnapshotBatch, DayIngested),
)
