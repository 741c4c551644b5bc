"""Errors that carry a message meant for a person: the CLI prints them as one line, HTTP maps them to 4xx.

None of them knows HTTP: each app's error table (`hubpulse_common.http.ErrorTable`) maps them to a status."""

from __future__ import annotations


class UserFacingError(Exception):
    """A problem the user can fix (bad input, bad configuration); shown as one clear line, no traceback."""


class ConfigError(UserFacingError):
    """A setting is missing, malformed or points at something unreachable. The message names the setting."""


class InputError(UserFacingError):
    """Bad input data (a history file, a request body); the message names where (file, line, column)."""


class DomainError(Exception):
    """A business rule refused the request; the message says why, for the caller. Each service names its own
    (`WeakPassword`, `IdempotencyKeyReused`) in its `errors.py`, next to the table mapping them to HTTP.
    `retry_after_s`, when set, says when the same request may succeed (HTTP sends it as Retry-After)."""

    retry_after_s: int | None = None

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s
