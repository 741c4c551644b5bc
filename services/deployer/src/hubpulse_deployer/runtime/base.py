"""What every runtime module shares with the planner (a leaf: the runtimes import it, the planner imports them)."""

from __future__ import annotations

from typing import Literal

RuntimeName = Literal["onnx", "torch"]


class Refused(Exception):
    """No runtime of this install can serve the repo; the message says why and what would."""
