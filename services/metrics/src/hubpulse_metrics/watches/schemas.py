"""Request and response models of watches and their alerts."""

# The public models are shared with the gateway; this module re-exports them for the domain.
from hubpulse_common.watch_schemas import (
    AlertPage,
    Channels,
    DeliveryAttempt,
    Watch,
    WatchAlert,
    WatchIn,
    WatchPatch,
)

__all__ = ["AlertPage", "Channels", "DeliveryAttempt", "Watch", "WatchAlert", "WatchIn", "WatchPatch"]
