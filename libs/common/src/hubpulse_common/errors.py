"""Errors that carry a message meant for a person: the CLI prints them as one line, HTTP maps them to 4xx."""

from __future__ import annotations


class UserFacingError(Exception):
    """A problem the user can fix (bad input, bad configuration); shown as one clear line, no traceback."""


class ConfigError(UserFacingError):
    """A setting is missing, malformed or points at something unreachable. The message names the setting."""


class InputError(UserFacingError):
    """Bad input data (a history file, a request body); the message names where (file, line, column)."""
