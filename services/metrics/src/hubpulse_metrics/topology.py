"""The topics this service publishes and consumes (see hubpulse_common.topology)."""

from hubpulse_common.events import AlertEvent, DeploymentEvent, InferenceEvent
from hubpulse_common.topology import Topology

TOPOLOGY = Topology("metrics", publishes=(AlertEvent,), consumes=(InferenceEvent, DeploymentEvent))
