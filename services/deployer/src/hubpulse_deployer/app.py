"""The deployer service's FastAPI app and its composition root: the lifespan opens the stores, the targets and the
provisioning work, and keeps them as one `deps.DeployerState`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from huggingface_hub import HfApi

from hubpulse_common.http import service_app
from hubpulse_common.identity import open_token_verifier
from hubpulse_common.resources import open_resources
from hubpulse_common.supervise import report
from hubpulse_deployer import routes
from hubpulse_deployer.deps import DEPLOYER_STATE, DeployerState
from hubpulse_deployer.errors import HTTP_ERRORS
from hubpulse_deployer.idempotency import IdempotencyCache
from hubpulse_deployer.orchestrator import Orchestrator
from hubpulse_deployer.repository import DeploymentRepository
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_deployer.targets.aws_lambda import LambdaTarget
from hubpulse_deployer.targets.base import Target
from hubpulse_deployer.targets.hf_space import HfSpaceTarget
from hubpulse_deployer.targets.kubernetes import KubernetesTarget
from hubpulse_deployer.targets.local import LocalTarget


def build_targets(settings: DeployerSettings) -> dict[str, Target]:
    targets: list[Target] = [
        LocalTarget(settings),
        HfSpaceTarget(settings),
        LambdaTarget(settings),
        KubernetesTarget(settings),
    ]
    return {target.name: target for target in targets}


def create_app(settings: DeployerSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_resources(app, settings, kafka=True, mongo=True, s3=True) as res,
            open_token_verifier(app, settings),
        ):
            collection = res.require_mongo()[settings.mongo_database]["deployments"]
            repo = DeploymentRepository(collection, settings.predict_doc_max_age_s)
            await repo.ensure_indexes()
            targets = build_targets(settings)
            orchestrator = Orchestrator(repo, res.require_bus(), targets, settings.resource_poll_s)
            idempotency = IdempotencyCache(settings.idempotency_cache_bytes, settings.idempotency_ttl_s)
            hub = HfApi(endpoint=settings.hf_endpoint, token=False)
            DEPLOYER_STATE.set(app, DeployerState(orchestrator, idempotency, settings, hub))
            report(app, orchestrator.watcher)
            await orchestrator.start()
            try:
                yield
            finally:
                await orchestrator.stop()
                for target in targets.values():
                    await target.close()

    return service_app(
        settings,
        title="hubpulse deployer",
        description="One-click deployments to HF Spaces, AWS Lambda, Kubernetes and local.",
        lifespan=lifespan,
        errors=HTTP_ERRORS,
        routers=[routes.router, routes.deployability_router],
    )
