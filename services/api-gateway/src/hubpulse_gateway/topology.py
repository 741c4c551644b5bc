"""The topics this service publishes and consumes (see hubpulse_common.topology)."""

from hubpulse_common.events import InferenceEvent
from hubpulse_common.topology import Topology

TOPOLOGY = Topology("api-gateway", publishes=(InferenceEvent,))
