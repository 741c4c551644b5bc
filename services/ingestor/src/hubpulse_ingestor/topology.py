"""The topics this service publishes and consumes (see hubpulse_common.topology)."""

from hubpulse_common.events import DayIngested, ModelSnapshot, ModelSnapshotBatch
from hubpulse_common.topology import Topology

TOPOLOGY = Topology("ingestor", publishes=(ModelSnapshot, ModelSnapshotBatch, DayIngested))
