"""The gateway's named errors and, in one table, the HTTP answer each gets (`app.py` installs it).

Errors an upstream answered travel on as they are (`upstream.passthrough_error`); those are not named here.
"""

from __future__ import annotations

from typing import Any

from hubpulse_common.errors import DomainError
from hubpulse_common.http import Answer, ErrorTable
from hubpulse_gateway.catalog.query import InvalidCursor, ReversedRange, TooManyTerms
from hubpulse_gateway.catalog.schemas import ErrorBody
from hubpulse_gateway.ratelimit import TooManyFailedLogins


class CsrfFailed(DomainError):
    """A cookie session's unsafe request without the matching X-CSRF-Token header."""


class BadSignInState(DomainError):
    """The sign-in callback's state is not the one this browser started with."""


class SignInNotCompleted(DomainError):
    """Hugging Face sent the browser back without a code: the user declined, or the provider failed."""


class ModelNotFound(DomainError):
    pass


HTTP_ERRORS: ErrorTable = {
    CsrfFailed: Answer(403, "csrf_failed"),
    BadSignInState: Answer(400, "bad_state"),
    SignInNotCompleted: Answer(400, "oauth_failed"),
    ModelNotFound: Answer(404, "model_not_found"),
    TooManyTerms: Answer(422, "too_many_terms"),
    ReversedRange: Answer(422, "bad_range"),
    InvalidCursor: Answer(422, "invalid_cursor"),
    TooManyFailedLogins: Answer(429, "rate_limited"),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the listed statuses answer the shared error body (in the OpenAPI document)."""
    return {status: {"model": ErrorBody, "description": "Error"} for status in statuses}
