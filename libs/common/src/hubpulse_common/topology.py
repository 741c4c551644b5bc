"""What each service publishes and consumes, declared once next to the service's code.

A service declares a `Topology` in its own `topology.py` and registers it under the `hubpulse.topology`
entry point; its app builds its consumers from `consumes`, and the AsyncAPI document
(`hubpulse_common.asyncapi`) reads the registered topologies, so the documented producers, consumers and
consumer groups are the ones the code runs (tests/common/test_contracts.py checks both directions).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from hubpulse_common.events import Event

ENTRY_POINT_GROUP = "hubpulse.topology"


@dataclass(frozen=True, slots=True)
class Topology:
    service: str
    publishes: tuple[type[Event], ...] = ()
    consumes: tuple[type[Event], ...] = ()

    @property
    def consumer_group(self) -> str:
        """The default consumer group (`HUBPULSE_CONSUMER_GROUP` overrides it per deployment)."""
        return self.service


def registered() -> tuple[Topology, ...]:
    """Every installed service's topology, in service-name order."""
    found = [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for topology in found:
        if not isinstance(topology, Topology):
            raise TypeError(f"entry point {ENTRY_POINT_GROUP} must name a Topology, got {topology!r}")
    return tuple(sorted(found, key=lambda t: t.service))
