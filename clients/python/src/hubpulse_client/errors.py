"""What the client raises: the API's error code and message, and the HTTP status."""

from __future__ import annotations


class HubpulseError(Exception):
    """An error answer of the API (`{"error": {"code", "message"}}`), or no answer at all (status 0)."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class RetryableError(HubpulseError):
    """429 or 503: the client waits (Retry-After when given) and asks again, up to `max_retries` times."""


class DeploymentFailed(HubpulseError):
    """wait_until_running saw the deployment fail, or not run in time."""
