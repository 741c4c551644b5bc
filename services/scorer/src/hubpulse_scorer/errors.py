"""The scorer's named errors and, in one table, the HTTP answer each gets (`app.py` installs it)."""

from __future__ import annotations

from hubpulse_common.errors import DomainError
from hubpulse_common.http import Answer, ErrorTable


class ModelNotInCatalog(DomainError):
    """No catalog row has this model id."""


class ModelNotScored(DomainError):
    """The model is in the catalog but no model version has scored it yet: there is nothing to explain."""


class VersionNotInRegistry(DomainError):
    """The model version that scored the row is no longer in the registry, so it cannot explain the row."""


HTTP_ERRORS: ErrorTable = {
    ModelNotInCatalog: Answer(404, "model_not_found"),
    ModelNotScored: Answer(404, "model_not_scored"),
    VersionNotInRegistry: Answer(404, "model_version_not_found"),
}
