"""The deployer's HTTP API, called by the gateway as the caller: every route verifies the caller's access token
(`hubpulse_common.identity`); a deployment is visible only to the user who created it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from cachetools import TTLCache
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from huggingface_hub import ModelInfo
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

# the base of every error huggingface_hub raises for a call: the Hub's answers and transport errors alike
from huggingface_hub.errors import HTTPError as HubCallError  # type: ignore[attr-defined]

from hubpulse_common.errors import DomainError
from hubpulse_common.events import DeploymentEvent, DeploymentStatus
from hubpulse_common.http import BodyNotJson, NotFound
from hubpulse_common.identity import CallerIdentity, Identity, MemberIdentity
from hubpulse_common.inference import Input, NotInvocable, NotRunning, parse_inputs, servable
from hubpulse_deployer.deps import state_of
from hubpulse_deployer.documents import Deployment, Version
from hubpulse_deployer.errors import (
    HTTP_ERRORS,
    BadHfToken,
    GatedModel,
    HubRefused,
    HubUnavailable,
    InvalidModelId,
    ModelNotPublic,
    ModelTooLarge,
    TeardownFailed,
    UnknownModel,
    UnknownRevision,
    UnsupportedTask,
)
from hubpulse_deployer.idempotency import digest_of
from hubpulse_deployer.runtime import Refused, plan
from hubpulse_deployer.runtime.fetch import (
    HUB_LOGIN_VARIABLE,
    download_bytes,
    model_info,
    require_public,
    too_large,
    user_token,
)
from hubpulse_deployer.schemas import CreateDeployment, DeploymentConfig, RollbackRequest, UpdateDeployment
from hubpulse_deployer.service import (
    ACTIVE,
    DeploymentView,
    add_version,
    check_limits,
    new_deployment,
    public_view,
    rollback_version,
)
from hubpulse_deployer.targets.base import NOT_INVOCABLE, TargetUnavailable

router = APIRouter(prefix="/deployments", tags=["deployments"])
# Not the caller's business but the platform's: whether this deployer can serve a public repo. It needs no token
# (the gateway asks it for anonymous visitors of a model page), reads what the platform's token reads, and is kept a
# minute so page views do not each ask the Hub.
deployability_router = APIRouter(tags=["deployments"])
_DEPLOYABILITY: TTLCache[tuple[str, str, str], dict[str, Any]] = TTLCache(maxsize=4096, ttl=60.0)
S = DeploymentStatus


async def _owned(request: Request, deployment_id: str, who: Identity, *, recent: bool = False) -> Deployment:
    """The deployment, if `who` may see it; `recent`: a copy read up to a second ago will do (predict)."""
    repo = state_of(request).orchestrator.repo
    doc = await (repo.get_recent(deployment_id) if recent else repo.get(deployment_id))
    # someone else's deployment (or one without an owner) is answered as missing: its existence is not theirs to learn
    if doc is None or doc.user_id != who.user_id:
        raise NotFound(f"no deployment {deployment_id}")
    return doc


def _view(request: Request, doc: Deployment) -> DeploymentView:
    return public_view(doc, state_of(request).orchestrator.targets[doc.target].resources(doc.id))


def _hub_error(exc: HubCallError, model_id: str, revision: str, own_token: bool) -> DomainError:
    """A Hub refusal as the API answers it: the caller's mistakes are 4xx, the platform's (token, Hub down) 503."""
    if isinstance(exc, GatedRepoError):
        return GatedModel(f"{model_id} is gated and the token used has not been granted access")
    if isinstance(exc, RepositoryNotFoundError):
        return UnknownModel(f"{model_id} is not a model on the Hub (or not readable with the token used)")
    if isinstance(exc, RevisionNotFoundError):
        return UnknownRevision(f"{model_id} has no revision {revision!r}")
    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
    if status == 401 and own_token:
        return BadHfToken(f"the Hub refused your config.secrets.{HUB_LOGIN_VARIABLE}")
    if status == 401:
        return HubUnavailable("the Hub refused the platform's token (HUBPULSE_HF_TOKEN)")
    if status is not None and 400 <= status < 500:
        return HubRefused(f"the Hub refused {model_id}@{revision}: {str(exc)[:200]}")
    return HubUnavailable(f"the Hub did not answer: {str(exc)[:200]}")


async def _task_of(request: Request, model_id: str, revision: str, config: DeploymentConfig) -> str:
    """The model's task, once it is known that the deployment may read it: with the user's own Hub token, or
    public and ungated with the platform's."""
    task, _ = await _checked_model(request, model_id, revision, config)
    return task


async def _checked_model(
    request: Request, model_id: str, revision: str, config: DeploymentConfig
) -> tuple[str, ModelInfo]:
    """`_task_of`, with the Hub's description of the repo."""
    own = user_token(config)
    try:
        info = await asyncio.to_thread(
            model_info, state_of(request).hub, model_id, revision, own or state_of(request).settings.hub_token()
        )
        if own is None:
            require_public(info)
    except Refused as exc:
        raise ModelNotPublic(str(exc)) from None
    except HFValidationError as exc:
        raise InvalidModelId(str(exc)[:200]) from None
    except HubCallError as exc:
        raise _hub_error(exc, model_id, revision, own is not None) from None
    if not servable(info.pipeline_tag):
        what = f"a {info.pipeline_tag!r} model" if info.pipeline_tag else "a model without a task (pipeline_tag)"
        raise UnsupportedTask(f"{model_id} is {what}, which is not served")
    task: str = info.pipeline_tag  # type: ignore[assignment]
    limit = state_of(request).settings.max_model_bytes
    if (size := too_large(info, task, limit)) is not None:
        raise ModelTooLarge(
            f"{model_id}@{revision} is {size} bytes to download, over the limit (HUBPULSE_MAX_MODEL_BYTES) of {limit}",
        )
    return task, info


async def _check_limits(
    request: Request, config: DeploymentConfig, org_id: str | None, user_id: str | None, changing: str | None = None
) -> None:
    """Refuse (4xx naming the limit) a version over one of the organisation's limits. `changing`: the deployment
    that gets the version (it is not counted twice, and the count does not grow)."""
    settings = state_of(request).settings
    active = await state_of(request).orchestrator.repo.active_of(org_id=org_id, user_id=user_id, statuses=ACTIVE)
    check_limits(
        config,
        [d.config for d in active if d.id != changing],
        max_deployments=None if changing else settings.max_deployments_per_org,
        max_memory_mb=settings.max_memory_mb_per_org,
        allowed_hardware=settings.allowed_hardware,
    )


@router.post("", status_code=202)
async def create(
    request: Request,
    body: CreateDeployment,
    who: MemberIdentity,
) -> DeploymentView:
    config = body.config
    await _check_limits(request, config, who.org_id, who.user_id)
    task = await _task_of(request, body.model_id, body.revision, config)
    orchestrator = state_of(request).orchestrator
    doc = new_deployment(
        model_id=body.model_id,
        revision=body.revision,
        target=body.target,
        task=task,
        config=config,
        user_id=who.user_id,
        org_id=who.org_id,
        now=datetime.now(UTC),
    )
    await orchestrator.repo.insert(doc)
    # the first transition is written and published before the answer, so pending is never invisible
    await orchestrator.bus.publish(_pending_event(doc))
    doc = await orchestrator.transition(doc.id, S.PROVISIONING)
    orchestrator.schedule(doc.id)
    return _view(request, doc)


def _pending_event(doc: Deployment) -> DeploymentEvent:
    return DeploymentEvent(
        deployment_id=doc.id,
        sequence=0,
        model_id=doc.model_id,
        revision=doc.versions[0].revision,
        target=doc.target,
        status=S.PENDING,
        version=1,
        user_id=doc.user_id,
        org_id=doc.org_id,
        occurred_at=doc.created_at,
    )


@router.get("")
async def list_deployments(
    request: Request,
    who: CallerIdentity,
    include_deleted: bool = False,
    limit: int = Query(100, ge=1, le=500),
) -> DeploymentView:
    repo = state_of(request).orchestrator.repo
    docs = await repo.owned(owner=who.user_id, include_deleted=include_deleted, limit=limit)
    return {"items": [_view(request, d) for d in docs]}


@router.get("/{deployment_id}")
async def get(request: Request, deployment_id: str, who: CallerIdentity) -> DeploymentView:
    return _view(request, await _owned(request, deployment_id, who))


@router.delete("/{deployment_id}")
async def delete(request: Request, deployment_id: str, who: MemberIdentity) -> DeploymentView:
    doc = await _owned(request, deployment_id, who)
    if doc.status == S.DELETED:
        return _view(request, doc)
    try:
        deleted = await state_of(request).orchestrator.delete(deployment_id)
    except TargetUnavailable as exc:
        raise TeardownFailed(str(exc)) from exc
    return _view(request, deleted)


async def _new_version(request: Request, doc: Deployment, version: Version) -> DeploymentView:
    await _check_limits(request, version.config, doc.org_id, doc.user_id, changing=doc.id)
    orchestrator = state_of(request).orchestrator
    updated = await orchestrator.transition(doc.id, S.PROVISIONING, push_version=version)
    orchestrator.schedule(doc.id)
    return _view(request, updated)


@router.patch("/{deployment_id}", status_code=202)
async def update(request: Request, deployment_id: str, body: UpdateDeployment, who: MemberIdentity) -> DeploymentView:
    doc = await _owned(request, deployment_id, who)
    if body.revision is not None:
        await _task_of(request, doc.model_id, body.revision, body.config or doc.current.config)
    version = add_version(doc, revision=body.revision, config=body.config, source="update", now=datetime.now(UTC))
    return await _new_version(request, doc, version)


@router.post("/{deployment_id}/rollback", status_code=202)
async def rollback(
    request: Request,
    deployment_id: str,
    who: MemberIdentity,
    body: RollbackRequest | None = None,
) -> DeploymentView:
    doc = await _owned(request, deployment_id, who)
    version = rollback_version(doc, (body or RollbackRequest()).version, datetime.now(UTC))
    return await _new_version(request, doc, version)


@router.post("/{deployment_id}/predict")
async def predict(
    request: Request,
    deployment_id: str,
    who: CallerIdentity,
    idempotency_key: str | None = Header(None, min_length=1, max_length=200),
) -> Response:
    """One predict call. With an Idempotency-Key (the caller's own), a repeat with the same inputs gets the kept
    answer (`Idempotent-Replayed: true`) and a repeat with other inputs a 422 (idempotency.py)."""
    doc = await _owned(request, deployment_id, who, recent=True)
    try:
        inputs, batch = parse_inputs(doc.task, orjson.loads(await request.body()))
    except orjson.JSONDecodeError:
        raise BodyNotJson() from None
    if idempotency_key is None:
        return Response(await _run_predict(request, doc, inputs, batch), media_type="application/json")
    cache = state_of(request).idempotency
    key = (deployment_id, who.user_id, idempotency_key)
    digest = digest_of(orjson.dumps([inputs, batch]))
    body, replayed = await cache.answer(key, digest, lambda: _run_predict(request, doc, inputs, batch))
    return Response(body, media_type="application/json", headers={"Idempotent-Replayed": "true"} if replayed else None)


async def _run_predict(request: Request, doc: Deployment, inputs: list[Input], batch: bool) -> bytes:
    deployment_id = doc.id
    if doc.status != S.RUNNING:
        reason = f": {doc.reason}" if doc.reason else ""
        raise NotRunning(f"deployment is {doc.status.value}{reason}")
    endpoint = doc.endpoint or {}
    if endpoint.get(NOT_INVOCABLE):
        raise NotInvocable(str(endpoint[NOT_INVOCABLE]))
    target = state_of(request).orchestrator.targets[doc.target]
    try:
        outputs = await target.predict(deployment_id, endpoint, inputs)
    except TargetUnavailable:
        # a dead server turns the deployment failed now, not at the next poll
        await state_of(request).orchestrator.reap()
        raise
    answer = {"deployment_id": deployment_id, "model_id": doc.model_id, "version": doc.version}
    return orjson.dumps({**answer, "outputs": outputs if batch else outputs[0]}, option=orjson.OPT_SERIALIZE_NUMPY)


@router.get("/{deployment_id}/manifests")
async def manifests(request: Request, deployment_id: str, who: CallerIdentity) -> JSONResponse:
    doc = await _owned(request, deployment_id, who)
    rendered = (doc.endpoint or {}).get("manifests")
    if rendered is None:
        raise NotFound("only kubernetes deployments have manifests, once rendered")
    return JSONResponse({"deployment_id": deployment_id, "version": doc.version, "yaml": rendered})


@deployability_router.get("/deployability")
async def deployability(
    request: Request,
    model_id: str = Query(min_length=1, max_length=300),
    revision: str = Query("main", min_length=1, max_length=100),
) -> dict[str, Any]:
    """Whether a deployment of the repo with the platform's Hub token would be served by this deployer's model
    server (targets local and kubernetes), and if not, why in a sentence: the checks of a new deployment, then the
    runtime's plan (`runtime.plan`: which weights it loads). A refusal of those checks is an answer here, not an
    error; an unreadable id is 422 and a Hub that does not answer 503."""
    key = (state_of(request).settings.hf_endpoint, model_id, revision)
    if (cached := _DEPLOYABILITY.get(key)) is not None:
        return cached
    unknown = dict.fromkeys(("code", "reason", "task", "runtime", "download_bytes"))
    answer: dict[str, Any] = {"model_id": model_id, "revision": revision, "deployable": False, **unknown}
    try:
        task, info = await _checked_model(request, model_id, revision, DeploymentConfig())
        answer |= {"task": task, "download_bytes": download_bytes(info, task)}
        chosen = plan(task, [s.rfilename for s in info.siblings or []])
        answer |= {"deployable": True, "runtime": chosen.runtime}
    except Refused as exc:
        answer |= {"code": "not_servable", "reason": str(exc)}
    except (InvalidModelId, HubUnavailable):
        raise
    except DomainError as exc:
        answer |= {"code": HTTP_ERRORS[type(exc)].code, "reason": str(exc)}
    _DEPLOYABILITY[key] = answer
    return answer
