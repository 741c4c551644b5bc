"""What a predict call may carry, per task: shared by the gateway (validates before forwarding) and the deployer.

A call is `{"inputs": x}` where x is one input or a list of them (a batch of at most `MAX_BATCH`). Every task
served here takes text: each input is a non-empty string of at most `MAX_INPUT_CHARS` characters, except
sentence-similarity's, which is the Inference API's pair `{"source_sentence": str, "sentences": [str, ...]}`
(at most `MAX_BATCH` sentences) and is answered with one cosine similarity per sentence.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, TypeAlias

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
        "sentence-similarity",
    }
)
# tasks whose input is a pair of texts to compare, not one text
SIMILARITY_TASKS: frozenset[str] = frozenset({"sentence-similarity"})
# One input of a predict call: a text, or (SIMILARITY_TASKS) {"source_sentence": str, "sentences": [str, ...]}
Input: TypeAlias = str | dict[str, Any]
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


def parse_inputs(task: str, body: Any) -> tuple[list[Input], bool]:
    """The inputs of a predict body as a list, and whether the caller sent a batch. Raises `InputError`."""
    if not servable(task):
        raise InputError(f"task {task!r} is not served; served tasks: {', '.join(sorted(TEXT_TASKS))}")
    pairs = task in SIMILARITY_TASKS
    shape = (
        'an object {"source_sentence": "...", "sentences": ["...", ...]} or a list of them'
        if pairs
        else "a string or a list of strings"
    )
    if not isinstance(body, dict) or "inputs" not in body:
        raise InputError(f'body must be a JSON object with "inputs": {shape}')
    raw = body["inputs"]
    batch = isinstance(raw, list)
    items = raw if batch else [raw]
    if not items:
        raise InputError("inputs is an empty list")
    if len(items) > MAX_BATCH:
        raise InputError(f"a batch holds at most {MAX_BATCH} inputs (got {len(items)})")
    for i, item in enumerate(items):
        where = f"inputs[{i}]" if batch else "inputs"
        if pairs:
            _check_pair(where, item, task)
        else:
            _check_text(where, item, task)
    return list(items), batch


def _check_text(where: str, item: Any, task: str) -> None:
    if not isinstance(item, str):
        raise InputError(f"{where} must be a string for {task} (got {type(item).__name__})")
    if not item.strip():
        raise InputError(f"{where} is empty")
    if len(item) > MAX_INPUT_CHARS:
        raise InputError(f"{where} is longer than {MAX_INPUT_CHARS} characters")


def _check_pair(where: str, item: Any, task: str) -> None:
    if not isinstance(item, dict) or set(item) != {"source_sentence", "sentences"}:
        got = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise InputError(
            f'{where} must be an object {{"source_sentence": "...", "sentences": ["...", ...]}} for {task} (got {got})'
        )
    _check_text(f"{where}.source_sentence", item["source_sentence"], task)
    sentences = item["sentences"]
    if not isinstance(sentences, list) or not sentences:
        raise InputError(f"{where}.sentences must be a non-empty list of strings")
    if len(sentences) > MAX_BATCH:
        raise InputError(f"{where}.sentences holds at most {MAX_BATCH} sentences (got {len(sentences)})")
    for j, sentence in enumerate(sentences):
        _check_text(f"{where}.sentences[{j}]", sentence, task)


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
