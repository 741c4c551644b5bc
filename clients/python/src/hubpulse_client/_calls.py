"""Each API call as data (method, path, parameters, how to read the answer), shared by the sync and async clients;
errors and retries (429/503 honouring Retry-After) in one place."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter
from tenacity import RetryCallState, retry_if_exception_type, stop_after_attempt

from hubpulse_client.errors import DeploymentFailed, HubpulseError, RetryableError
from hubpulse_client.models import (
    AlertPage,
    DeliveryAttempt,
    Deployment,
    ModelDetail,
    PicksPage,
    SearchPage,
    Watch,
    WatchAlert,
)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
M = TypeVar("M", bound=BaseModel)
I_co = TypeVar("I_co", covariant=True)
MAX_WAIT_S = 60.0


class Page(Protocol[I_co]):
    """A page of a listing walked with `cursor=` (the search, the alert feed)."""

    @property
    def items(self) -> Sequence[I_co]: ...

    @property
    def next_cursor(self) -> str | None: ...


@dataclass(frozen=True)
class Call(Generic[T_co]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T_co]
    params: Mapping[str, str] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None


def auth_headers(token: str | None, api_key: str | None) -> dict[str, str]:
    if token and api_key:
        raise ValueError("pass token= or api_key=, not both")
    if token:
        return {"authorization": f"Bearer {token}"}
    return {"x-api-key": api_key} if api_key else {}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to backoff


def check(response: httpx.Response) -> httpx.Response:
    """The response when it is a success; else HubpulseError (RetryableError for 429/503) with the API's code."""
    if response.status_code < 400:
        return response
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:300] or response.reason_phrase
    kind = RetryableError if response.status_code in (429, 503) else HubpulseError
    raise kind(response.status_code, code, message, _retry_after(response))


def wait(state: RetryCallState) -> float:
    """Retry-After when the server gave one (capped), else exponential backoff from 0.5 s."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, RetryableError) and error.retry_after_s is not None:
        return min(error.retry_after_s, MAX_WAIT_S)
    backoff: float = 0.5 * 2 ** (state.attempt_number - 1)
    return min(backoff, MAX_WAIT_S)


def retry_policy(max_retries: int) -> dict[str, Any]:
    return {
        "stop": stop_after_attempt(max_retries + 1),
        "wait": wait,
        "retry": retry_if_exception_type(RetryableError),
        "reraise": True,
    }


def _model(kind: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: kind.model_validate(response.json())


def _list(kind: type[M]) -> Callable[[httpx.Response], list[M]]:
    adapter = TypeAdapter(list[kind])  # type: ignore[valid-type]
    return lambda response: adapter.validate_python(response.json())


def _json(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def _params(values: Mapping[str, Any]) -> dict[str, str]:
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return {k: text(v) for k, v in values.items() if v is not None}


def _id(value: str) -> str:
    return quote(value, safe="")


# ---- catalog ----


def search(filters: Mapping[str, Any]) -> Call[SearchPage]:
    return Call("GET", "/v1/models", _model(SearchPage), _params(filters))


def model(model_id: str) -> Call[ModelDetail]:
    return Call("GET", f"/v1/models/{quote(model_id, safe='/')}", _model(ModelDetail))


def picks(threshold: float, limit: int) -> Call[PicksPage]:
    return Call("GET", "/v1/picks", _model(PicksPage), _params({"threshold": threshold, "limit": limit}))


# ---- watches and alerts ----


def create_watch(body: Mapping[str, Any]) -> Call[Watch]:
    return Call("POST", "/v1/watches", _model(Watch), json=dict(body))


def watches() -> Call[list[Watch]]:
    return Call("GET", "/v1/watches", _list(Watch))


def watch(watch_id: str) -> Call[Watch]:
    return Call("GET", f"/v1/watches/{_id(watch_id)}", _model(Watch))


def update_watch(watch_id: str, changes: Mapping[str, Any]) -> Call[Watch]:
    return Call("PATCH", f"/v1/watches/{_id(watch_id)}", _model(Watch), json=dict(changes))


def delete_watch(watch_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/watches/{_id(watch_id)}", lambda _: None)


def test_watch(watch_id: str) -> Call[WatchAlert]:
    return Call("POST", f"/v1/watches/{_id(watch_id)}/test", _model(WatchAlert))


def alerts(watch_id: str | None, unread: bool, limit: int) -> Call[AlertPage]:
    params = _params({"watch_id": watch_id, "unread": unread, "limit": limit})
    return Call("GET", "/v1/alerts", _model(AlertPage), params)


P = TypeVar("P", bound=Page[Any])


def following(call: Call[P], page: P) -> Call[P] | None:
    """The call for the page after `page` (the same query with its `next_cursor`); None after the last page."""
    if page.next_cursor is None:
        return None
    return replace(call, params={**(call.params or {}), "cursor": page.next_cursor})


def ack(alert_id: str) -> Call[WatchAlert]:
    return Call("POST", f"/v1/alerts/{_id(alert_id)}/ack", _model(WatchAlert))


def deliveries(alert_id: str) -> Call[list[DeliveryAttempt]]:
    return Call("GET", f"/v1/alerts/{_id(alert_id)}/deliveries", _list(DeliveryAttempt))


# ---- deployments and predictions ----


def deploy(model_id: str, target: str, revision: str, config: Mapping[str, Any] | None) -> Call[Deployment]:
    body: dict[str, Any] = {"model_id": model_id, "target": target, "revision": revision}
    if config is not None:
        body["config"] = dict(config)
    return Call("POST", "/v1/deployments", _json, json=body)


def deployments() -> Call[list[Deployment]]:
    return Call("GET", "/v1/deployments", _json)


def deployment(deployment_id: str) -> Call[Deployment]:
    return Call("GET", f"/v1/deployments/{_id(deployment_id)}", _json)


def delete_deployment(deployment_id: str) -> Call[Deployment]:
    return Call("DELETE", f"/v1/deployments/{_id(deployment_id)}", _json)


def predict(deployment_id: str, inputs: Any) -> Call[Any]:
    # One key for the call and its retries: the gateway runs the model once for it.
    key = {"idempotency-key": uuid.uuid4().hex}
    return Call("POST", f"/v1/deployments/{_id(deployment_id)}/predict", _json, json={"inputs": inputs}, headers=key)


def usage(fmt: str, group_by: str, since: datetime | None, until: datetime | None) -> Call[Any]:
    params = _params({"format": fmt, "group_by": group_by, "since": since, "until": until})
    return Call("GET", "/v1/usage", (lambda r: r.text) if fmt == "csv" else _json, params)


RUNNING, FAILED = "running", frozenset({"failed", "deleted", "stopped"})


def running(doc: Deployment, deadline: float, timeout_s: float) -> bool:
    """True once the deployment runs, False while it may still start (poll again); DeploymentFailed when it is in
    a state it will not leave for running, or is still not running at `deadline` (time.monotonic)."""
    status = str(doc.get("status", ""))
    if status == RUNNING:
        return True
    if status in FAILED:
        reason = doc.get("reason") or doc.get("error") or doc.get("status")
        raise DeploymentFailed(0, "deployment_failed", f"deployment {doc.get('id')} is {doc.get('status')}: {reason}")
    if time.monotonic() > deadline:
        raise DeploymentFailed(0, "timeout", f"deployment {doc.get('id')} not running after {timeout_s:g} s")
    return False
