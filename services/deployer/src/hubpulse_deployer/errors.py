"""The deployer's named errors and, in one table, the HTTP answer each gets (`app.py` installs it).

Domain code raises these, and the targets' own `TargetUnavailable` family; none of it knows HTTP.
"""

from __future__ import annotations

from hubpulse_common.errors import DomainError, InputError
from hubpulse_common.http import Answer, ErrorTable
from hubpulse_deployer.idempotency import IdempotencyKeyReused
from hubpulse_deployer.service import HardwareNotAllowed, InvalidTransition, QuotaExceeded, UnknownVersion
from hubpulse_deployer.targets.base import InputRejected, TargetFailed, TargetTimeout, TargetUnavailable


class TeardownFailed(DomainError):
    """The target could not remove a deployment's resources; the deployment stays as it was."""


class GatedModel(DomainError):
    pass


class ModelNotPublic(DomainError):
    pass


class UnknownModel(DomainError):
    pass


class UnknownRevision(DomainError):
    pass


class InvalidModelId(DomainError):
    pass


class UnsupportedTask(DomainError):
    pass


class ModelTooLarge(DomainError):
    pass


class BadHfToken(DomainError):
    """The Hub refused the user's own token (config.secrets)."""


class HubRefused(DomainError):
    pass


class HubUnavailable(DomainError):
    """The Hub did not answer, or refused the platform's own token: not the caller's fault."""


HTTP_ERRORS: ErrorTable = {
    InputError: Answer(422, "bad_input"),
    InputRejected: Answer(422, "bad_input"),
    IdempotencyKeyReused: Answer(422, "idempotency_key_reused"),
    InvalidTransition: Answer(409, "conflict"),
    UnknownVersion: Answer(409, "no_such_version"),
    HardwareNotAllowed: Answer(422, "hardware_not_allowed"),
    QuotaExceeded: Answer(403, "quota_exceeded"),
    TargetUnavailable: Answer(503, "unavailable"),
    TargetFailed: Answer(502, "bad_gateway"),
    TargetTimeout: Answer(504, "timeout"),
    TeardownFailed: Answer(503, "teardown_failed"),
    GatedModel: Answer(403, "gated_model"),
    ModelNotPublic: Answer(403, "model_not_public"),
    UnknownModel: Answer(422, "unknown_model"),
    UnknownRevision: Answer(422, "unknown_revision"),
    InvalidModelId: Answer(422, "invalid_model_id"),
    UnsupportedTask: Answer(422, "unsupported_task"),
    ModelTooLarge: Answer(422, "model_too_large"),
    BadHfToken: Answer(422, "bad_hf_token"),
    HubRefused: Answer(422, "hub_refused"),
    HubUnavailable: Answer(503, "hub_unavailable"),
}
