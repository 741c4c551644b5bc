"""Settings that keep services quick in tests, where what they change is not what the test checks."""

from __future__ import annotations

# The scorer's bootstrap model (trained when its registry is empty) on a Hub small enough to train in a second or
# two; the default Hub takes over ten seconds on a loaded machine. Tests check that one is trained, registered and
# promoted, not how good it is.
SMALL_BOOTSTRAP: dict[str, int] = {"bootstrap_models": 500, "bootstrap_days": 30}
