"""What a predict call may carry, per task: shared by the gateway (validates before forwarding) and the deployer.

A call is `{"inputs": x}` where x is one input or a list of them (a batch of at most `MAX_BATCH`). Every task
served here takes text; each input is a non-empty string of at most `MAX_INPUT_CHARS` characters.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from hubpulse_common.errors import InputError
from hubpulse_common.http import NamedError

# Tasks a transformers pipeline serves from text inputs alone (no image, audio or paired inputs).
TEXT_TASKS: frozenset[str] = frozenset(
    {
        "text-classification",
        "token-classification",
        "feature-extraction",
        "fill-mask",
        "text-generation",
        "text2text-generation",
        "summarization",
        "translation",
    }
)
MAX_BATCH = 32
MAX_INPUT_CHARS = 4096
# The environment variable a model server reads its bearer token from (unset: it takes any caller).
MODEL_SERVER_TOKEN_VARIABLE = "HUBPULSE_MODEL_SERVER_TOKEN"  # noqa: S105 (a variable's name, not a credential)
# A model server's gauge of predict calls in flight (its /metrics): what the kubernetes target's HPAs scale on,
# through the custom metrics API, where the cluster serves it.
INFLIGHT_METRIC = "hubpulse_inflight_requests"


def model_server_token(secret: str, deployment_id: str, url: str) -> str:
    """The bearer token of one model server: the deployer and the gateway derive it from the secret they share
    (`HUBPULSE_MODEL_SERVER_SECRET`), so neither hands it to the other. Bound to the deployment and the address:
    a port reused by another deployment's server refuses a call meant for the old one."""
    return hmac.new(secret.encode(), f"{deployment_id} {url}".encode(), hashlib.sha256).hexdigest()


def servable(task: str | None) -> bool:
    return task in TEXT_TASKS


def parse_inputs(task: str, body: Any) -> tuple[list[str], bool]:
    """The inputs of a predict body as a list, and whether the caller sent a batch. Raises `InputError`."""
    if not servable(task):
        raise InputError(f"task {task!r} is not served; served tasks: {', '.join(sorted(TEXT_TASKS))}")
    if not isinstance(body, dict) or "inputs" not in body:
        raise InputError('body must be a JSON object with "inputs": a string or a list of strings')
    raw = body["inputs"]
    batch = isinstance(raw, list)
    items = raw if batch else [raw]
    if not items:
        raise InputError("inputs is an empty list")
    if len(items) > MAX_BATCH:
        raise InputError(f"a batch holds at most {MAX_BATCH} inputs (got {len(items)})")
    for i, item in enumerate(items):
        where = f"inputs[{i}]" if batch else "inputs"
        if not isinstance(item, str):
            raise InputError(f"{where} must be a string for {task} (got {type(item).__name__})")
        if not item.strip():
            raise InputError(f"{where} is empty")
        if len(item) > MAX_INPUT_CHARS:
            raise InputError(f"{where} is longer than {MAX_INPUT_CHARS} characters")
    return list(items), batch


def error_message(body: bytes) -> str:
    """The message of a model server's `{"error": {"message"}}` answer (else the body's start)."""
    try:
        return str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:300].decode(errors="replace")


class NotRunning(NamedError, status=503, code="not_running"):
    """A predict call to a deployment that is not `running` (the message says its status and why)."""


class NotInvocable(NamedError, status=503, code="not_invocable"):
    """A predict call to a deployment that runs where it is but cannot be called from here."""
