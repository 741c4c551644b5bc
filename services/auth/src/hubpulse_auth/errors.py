"""The auth service's named errors and, in one table, the HTTP answer each gets.

Domain code (`service.py`, `tokens.py`, `hashing.py`, `oauth.py`) raises these and knows nothing of HTTP;
`app.py` hands `HTTP_ERRORS` to `create_service_app`.
"""

from __future__ import annotations

from hubpulse_common.errors import DomainError
from hubpulse_common.http import Answer, ErrorTable


class InvalidEmail(DomainError):
    pass


class WeakPassword(DomainError):
    pass


class InvalidScopes(DomainError):
    pass


class EmailTaken(DomainError):
    pass


class InvalidCredentials(DomainError):
    pass


class WrongPassword(DomainError):
    """The current password, needed to change how an account logs in, is missing or wrong."""


class TooManyFailedLogins(DomainError):
    pass


class HashingBusy(DomainError):
    """Every password-hashing slot stayed taken for the whole wait."""


class CsrfFailed(DomainError):
    pass


class InvalidRefreshToken(DomainError):
    pass


class RefreshTokenReused(DomainError):
    """A spent refresh token came back: it leaked, and its whole family is revoked."""


class SessionRevoked(DomainError):
    pass


class BadSignInState(DomainError):
    pass


class SignInFailed(DomainError):
    """Hugging Face refused the code exchange, or its id token did not verify."""


class HfAlreadyLinked(DomainError):
    pass


class LinkRequired(DomainError):
    """An account with the same, unproven email exists: link from a session of that account instead."""


HTTP_ERRORS: ErrorTable = {
    InvalidEmail: Answer(422, "invalid_email"),
    WeakPassword: Answer(422, "weak_password"),
    InvalidScopes: Answer(422, "invalid_scopes"),
    EmailTaken: Answer(409, "email_taken"),
    InvalidCredentials: Answer(401, "invalid_credentials"),
    WrongPassword: Answer(403, "wrong_password"),
    TooManyFailedLogins: Answer(429, "rate_limited"),
    HashingBusy: Answer(503, "busy"),
    CsrfFailed: Answer(403, "csrf_failed"),
    InvalidRefreshToken: Answer(401, "invalid_refresh_token"),
    RefreshTokenReused: Answer(401, "refresh_token_reused"),
    SessionRevoked: Answer(401, "session_revoked"),
    BadSignInState: Answer(400, "bad_state"),
    SignInFailed: Answer(400, "oauth_failed"),
    HfAlreadyLinked: Answer(409, "hf_already_linked"),
    LinkRequired: Answer(409, "link_required"),
}
