"""The metrics service's named errors and, in one table, the HTTP answer each gets (`app.py` installs it)."""

from __future__ import annotations

from hubpulse_common.errors import DomainError
from hubpulse_common.http import Answer, ErrorTable


class BadRange(DomainError):
    """A query window that is reversed, empty or longer than the service allows."""


class BadSearch(DomainError):
    pass


class WebhookRefused(DomainError):
    """A webhook URL the service will not call (not https, a private address, ...)."""


class WatchNotFound(DomainError):
    pass


class AlertNotFound(DomainError):
    pass


class BadUnsubscribeToken(DomainError):
    pass


class BadCursor(DomainError):
    pass


HTTP_ERRORS: ErrorTable = {
    BadRange: Answer(400, "bad_range"),
    BadSearch: Answer(422, "bad_search"),
    WebhookRefused: Answer(422, "webhook_refused"),
    WatchNotFound: Answer(404, "watch_not_found"),
    AlertNotFound: Answer(404, "alert_not_found"),
    BadUnsubscribeToken: Answer(403, "bad_token"),
    BadCursor: Answer(422, "bad_cursor"),
}
