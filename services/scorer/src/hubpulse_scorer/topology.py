"""The topics this service publishes and consumes (see hubpulse_common.topology)."""

from hubpulse_common.events import ModelFeaturesPacked, ModelScore, ModelScoresBatch
from hubpulse_common.topology import Topology

TOPOLOGY = Topology("scorer", publishes=(ModelScore, ModelScoresBatch), consumes=(ModelFeaturesPacked,))
