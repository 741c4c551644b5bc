"""Deployments and inference: `/v1/deployments...`, forwarded to the deployer as the caller.

Predict is validated here against the deployment's task (its shape cached briefly), forwarded with the
caller's Idempotency-Key (then retried on timeouts/5xx: the deployer's answer for the key means the model never
runs twice for one call), and answered 503 when the deployment is not running. Every predict call, good or bad,
emits an `InferenceEvent`.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

import orjson
from cachetools import TTLCache
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from hubpulse_common.asgi import HttpMiddleware
from hubpulse_common.errors import InputError
from hubpulse_common.events import InferenceEvent
from hubpulse_common.http import ApiError, BadGateway, BadInput, BodyNotJson, Unavailable
from hubpulse_common.identity import Identity
from hubpulse_common.inference import Input, NotInvocable, NotRunning, error_message, parse_inputs
from hubpulse_common.logging import get_logger
from hubpulse_gateway.dataplane import Lost, ModelServers, NotSent
from hubpulse_gateway.deps import (
    GATEWAY_STATE,
    BusDep,
    CurrentUser,
    GatewayState,
    MemberUser,
    UpstreamsDep,
    current_user,
    state_of,
)
from hubpulse_gateway.upstream import UpstreamId, Upstreams

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])
log = get_logger(__name__)
JSON = "application/json"
# deployment id -> (task, status, model_id, owner): predict needs them per call, they change rarely
_SHAPES: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=10_000, ttl=2.0)


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type=JSON)


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BodyNotJson() from None


@router.post("", status_code=202)
async def create(request: Request, user: MemberUser, upstreams: UpstreamsDep) -> Response:
    body = await upstreams.deployer.json("POST", "/deployments", principal=user, json=await _body(request))
    return _json(body, 202)


@router.get("")
async def list_deployments(user: CurrentUser, upstreams: UpstreamsDep, include_deleted: bool = False) -> Response:
    params = {"include_deleted": str(include_deleted).lower()}
    return _json(await upstreams.deployer.json("GET", "/deployments", principal=user, params=params))


async def _get(upstreams: Upstreams, user: Identity, deployment_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = await upstreams.deployer.json("GET", f"/deployments/{deployment_id}", principal=user)
    _SHAPES[f"{user.user_id}:{deployment_id}"] = doc
    return doc


@router.get("/{deployment_id}")
async def get(deployment_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep) -> Response:
    return _json(await _get(upstreams, user, deployment_id))


@router.delete("/{deployment_id}")
async def delete(deployment_id: UpstreamId, user: MemberUser, upstreams: UpstreamsDep) -> Response:
    _SHAPES.pop(f"{user.user_id}:{deployment_id}", None)
    return _json(await upstreams.deployer.json("DELETE", f"/deployments/{deployment_id}", principal=user))


@router.patch("/{deployment_id}", status_code=202)
async def update(request: Request, deployment_id: UpstreamId, user: MemberUser, upstreams: UpstreamsDep) -> Response:
    path = f"/deployments/{deployment_id}"
    return _json(await upstreams.deployer.json("PATCH", path, principal=user, json=await _body(request)), 202)


@router.post("/{deployment_id}/rollback", status_code=202)
async def rollback(request: Request, deployment_id: UpstreamId, user: MemberUser, upstreams: UpstreamsDep) -> Response:
    body = await request.body()
    payload = await _body(request) if body.strip() else {}
    path = f"/deployments/{deployment_id}/rollback"
    return _json(await upstreams.deployer.json("POST", path, principal=user, json=payload), 202)


@router.get("/{deployment_id}/manifests")
async def manifests(
    deployment_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep, format: Literal["json", "yaml"] = "json"
) -> Response:
    """The Kubernetes objects of a kubernetes deployment (secret values redacted), as JSON or plain YAML."""
    body = await upstreams.deployer.json("GET", f"/deployments/{deployment_id}/manifests", principal=user)
    if format == "yaml":
        return Response(body["yaml"], media_type="application/yaml")
    return _json(body)


async def _forward(
    request: Request, upstreams: Upstreams, user: Identity, deployment_id: str, raw: bytes
) -> tuple[dict[str, Any], bytes, int]:
    """(deployment, response body, number of inputs) of one predict call; ApiError for every failure."""
    doc = _SHAPES.get(f"{user.user_id}:{deployment_id}") or await _get(upstreams, user, deployment_id)
    try:
        body = orjson.loads(raw)
        inputs, batch = parse_inputs(doc["task"], body)
    except orjson.JSONDecodeError:
        raise BodyNotJson() from None
    except InputError as exc:
        raise BadInput(str(exc)) from None
    request.state.inputs = len(inputs)
    if doc["status"] != "running":
        doc = await _get(upstreams, user, deployment_id)  # the cached status may be stale: ask once more
    if doc["status"] != "running":
        reason = f": {doc['reason']}" if doc.get("reason") else ""
        raise NotRunning(f"deployment {deployment_id} is {doc['status']}{reason}")
    # running where it is, but not callable from here (a Space the Hub gives no host for, Lambda on moto):
    # answered at once, never retried against the deployer
    if unreachable := (doc.get("endpoint") or {}).get("not_invocable"):
        raise NotInvocable(str(unreachable))
    key = request.headers.get("idempotency-key")
    servers = state_of(request).model_servers
    # The data plane (dataplane.py) for calls without a key; the deployer keeps the answers of keyed calls
    endpoint = servers.endpoint(doc) if servers is not None and not key else None
    if servers is not None and endpoint is not None:
        try:
            return doc, await _direct(servers, endpoint, upstreams, user, doc, inputs, batch), len(inputs)
        except NotSent:
            # no server ran it (gone, or another one at that address now): the deployer's path says why, and
            # makes the deployer notice a dead server at once
            _SHAPES.pop(f"{user.user_id}:{deployment_id}", None)
    # The caller's Idempotency-Key travels to the deployer, which keeps the answer for it; only such a call is
    # retried on a transport error or 5xx (a retry without a key could run the model twice).
    try:
        response = await upstreams.deployer.request(
            "POST",
            f"/deployments/{deployment_id}/predict",
            principal=user,
            json={"inputs": body["inputs"]},
            headers={"idempotency-key": key} if key else None,
            retry=bool(key),
        )
    except ApiError as exc:
        if exc.status < 500:
            raise
        raise await _down_or(upstreams, user, deployment_id, exc) from exc
    return doc, response.content, len(inputs)


async def _down_or(upstreams: Upstreams, user: Identity, deployment_id: str, error: ApiError) -> ApiError:
    """After a failed call: if the deployment went down meanwhile, say so (503) rather than `error`."""
    fresh = await _get(upstreams, user, deployment_id)
    if fresh["status"] != "running":
        return NotRunning(f"deployment {deployment_id} is {fresh['status']}: {fresh.get('reason')}")
    return error


async def _direct(
    servers: ModelServers,
    endpoint: tuple[str, str],
    upstreams: Upstreams,
    user: Identity,
    doc: dict[str, Any],
    inputs: list[Input],
    batch: bool,
) -> bytes:
    """The call on the model server itself, answered as the deployer answers it."""
    deployment_id = str(doc["id"])
    try:
        status, content = await servers.predict(*endpoint, orjson.dumps({"inputs": inputs}))
    except Lost as exc:
        _SHAPES.pop(f"{user.user_id}:{deployment_id}", None)
        unanswered = Unavailable(f"the model server did not answer: {exc}")
        raise await _down_or(upstreams, user, deployment_id, unanswered) from exc
    if status == 422:
        raise BadInput(error_message(content))
    if status != 200:
        raise BadGateway(f"the model server failed ({status})")
    outputs = orjson.loads(content)["outputs"]
    answer = {"deployment_id": deployment_id, "model_id": doc["model_id"], "version": doc["version"]}
    return orjson.dumps({**answer, "outputs": outputs if batch else outputs[0]})


@router.post("/{deployment_id}/predict")
async def predict(
    request: Request, deployment_id: UpstreamId, user: CurrentUser, upstreams: UpstreamsDep, bus: BusDep
) -> Response:
    """Run the deployed model. The body is `{"inputs": x}`: one input, or a list of up to 32 (a batch, answered
    as a list in the same order). An input is a text for every served task but sentence-similarity, whose input
    is `{"source_sentence": "...", "sentences": ["...", ...]}` and whose answer is one cosine similarity per
    sentence, as the Hugging Face Inference API answers that task."""
    started = time.perf_counter()
    raw = await request.body()
    status, content, model_id, error = 500, b"", "", None
    try:
        doc, content, _ = await _forward(request, upstreams, user, deployment_id, raw)
        status, model_id = 200, doc["model_id"]
        return Response(content, 200, media_type=JSON)
    except ApiError as exc:
        status, error = exc.status, f"{exc.code}: {exc.message}"
        cached = _SHAPES.get(f"{user.user_id}:{deployment_id}")
        model_id = cached["model_id"] if cached else ""
        content = orjson.dumps({"error": {"code": exc.code, "message": exc.message}})
        raise
    finally:
        event = InferenceEvent(
            deployment_id=deployment_id,
            model_id=model_id,
            user_id=user.user_id,
            org_id=user.org_id,
            status="ok" if status < 400 else "error",
            http_status=status,
            latency_ms=(time.perf_counter() - started) * 1000,
            inputs=getattr(request.state, "inputs", 0),
            request_bytes=len(raw),
            response_bytes=len(content),
            error=error,
        )
        # best effort: the call's own answer never waits on, or fails with, the broker
        await bus.publish_best_effort(event)


PREDICT_PATH = re.compile(r"^/v1/deployments/([A-Za-z0-9_][A-Za-z0-9_.:-]{0,99})/predict$")  # as UpstreamId


class PredictMiddleware(HttpMiddleware):
    """`POST /v1/deployments/{id}/predict` answered by `predict` itself, without FastAPI's routing and dependency
    solving (the latter alone was a tenth of the gateway's CPU per call; docs/decisions/deployer.md, "The data plane").

    Installed innermost, like the search cache, so the call is still rate-limited, counted under the route's
    template and given its request id; errors get the app's own handlers (the named error table), and an id
    the route would refuse is left to FastAPI, which answers it as before. The route stays declared for the
    OpenAPI document.
    """

    def __init__(self, app: ASGIApp, route: BaseRoute) -> None:
        super().__init__(app)
        self.route = route

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = scope["method"] == "POST" and PREDICT_PATH.match(scope["path"])
        state: GatewayState | None = getattr(scope["app"].state, GATEWAY_STATE.name, None) if found else None
        if not found or state is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        try:
            user = await current_user(await state.security.authenticate(request))
            response = await predict(request, found.group(1), user, state.upstreams, state.bus)
        except Exception as exc:
            handlers = scope["app"].exception_handlers
            handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers and c is not Exception), None)
            if handler is None:
                raise  # as from any route: ObservabilityMiddleware answers it
            response = await handler(request, exc)
        await response(scope, receive, send)


def predict_route() -> BaseRoute:
    return next(r for r in router.routes if getattr(r, "path", None) == f"{router.prefix}/{{deployment_id}}/predict")
