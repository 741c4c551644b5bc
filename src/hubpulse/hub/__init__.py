"""The replay Hub: huggingface.co's model API served from a history file or a synthetic Hub, day by day."""

from hubpulse.hub.app import create_app
from hubpulse.hub.faults import FaultConfig
from hubpulse.hub.server import RunningHub, start_in_thread

__all__ = ["FaultConfig", "RunningHub", "create_app", "start_in_thread"]
