"""The consumer session the suite's services take (set by conftest: Kafka's floor, 6 s). On the embedded broker a
group's join waits half of it and a killed member is noticed after it (docs/decisions.md, the embedded platform)."""

from __future__ import annotations

import os

SESSION_VARIABLE = "HUBPULSE_CONSUMER_SESSION_TIMEOUT_MS"


def session_timeout_ms() -> int:
    """For a consumer a test makes: it joins as fast as the services'."""
    return int(os.environ[SESSION_VARIABLE])


def session_env() -> dict[str, str]:
    """For a platform a test starts with a clean environment (no other HUBPULSE_ variable)."""
    return {SESSION_VARIABLE: os.environ[SESSION_VARIABLE]}
