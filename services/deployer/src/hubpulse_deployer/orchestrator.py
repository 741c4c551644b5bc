"""Drives deployments through their states: writes each transition to MongoDB, then publishes it.

Provisioning runs as background tasks (one per deployment at a time); a watcher turns deployments whose
serving process died into `failed`. Write-then-publish: a crash between the two leaves the document ahead of
the topic; consumers key on (deployment_id, sequence), so a later transition still orders correctly.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Unpack

from prometheus_client import Counter, Gauge
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from hubpulse_common.events import DeploymentStatus
from hubpulse_common.kafka import EventBus
from hubpulse_common.logging import get_logger
from hubpulse_common.supervise import Supervised
from hubpulse_deployer.documents import Deployment
from hubpulse_deployer.repository import Conflict, DeploymentRepository
from hubpulse_deployer.service import Change, plan_transition
from hubpulse_deployer.targets.base import NotApplied, ProvisionError, Spec, Target

log = get_logger(__name__)
S = DeploymentStatus

REPORT_EVERY_S = 10.0
TRANSITIONS = Counter("hubpulse_deployer_transitions_total", "Deployment state transitions", ["target", "status"])
DEPLOYMENTS = Gauge("hubpulse_deployer_deployments", "Deployments by target and state", ["target", "status"])
SERVER_CPU = Gauge(
    "hubpulse_model_server_cpu_percent", "CPU of a deployment's model server", ["target", "deployment_id"]
)
SERVER_MEMORY = Gauge(
    "hubpulse_model_server_memory_rss_bytes",
    "Resident memory of a deployment's model server",
    ["target", "deployment_id"],
)


def _now() -> datetime:
    return datetime.now(UTC)


class Orchestrator:
    def __init__(self, repo: DeploymentRepository, bus: EventBus, targets: dict[str, Target], poll_s: float) -> None:
        self.repo, self.bus, self.targets = repo, bus, targets
        self._poll_s = poll_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # reported by the app's /readyz (supervise.report); restarted with backoff should a reap round raise
        self.watcher = Supervised("deployer-watch", self._watch)
        self._served: set[tuple[str, str]] = set()  # (target, deployment id) with model server gauges

    async def start(self) -> None:
        self.watcher.start()
        # deployments a previous process was serving: bring them up again
        for doc in await self.repo.with_status([S.PENDING, S.PROVISIONING, S.RUNNING]):
            if doc.status != S.PROVISIONING:
                await self.transition(doc.id, S.PROVISIONING, reason="deployer restarted")
            self.schedule(doc.id)

    async def stop(self) -> None:
        await self.watcher.stop()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def transition(self, deployment_id: str, to: DeploymentStatus, **change: Unpack[Change]) -> Deployment:
        """Move one deployment to `to`, retrying when another writer got there first."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(5), retry=retry_if_exception_type(Conflict)):
            with attempt:
                doc = await self.repo.get(deployment_id)
                if doc is None:
                    raise KeyError(deployment_id)
                planned = plan_transition(doc, to, now=_now(), **change)
                updated = await self.repo.apply(deployment_id, planned, change.get("push_version"))
        await self.bus.publish(planned.event)
        TRANSITIONS.labels(updated.target, to.value).inc()
        log.info("deployment.transition", deployment_id=deployment_id, status=to.value, reason=change.get("reason"))
        return updated

    def schedule(self, deployment_id: str) -> None:
        """Provision the current version of a deployment already in `provisioning`, in the background,
        replacing work in flight for it."""
        previous = self._tasks.pop(deployment_id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._provision(deployment_id), name=f"provision-{deployment_id}")
        self._tasks[deployment_id] = task
        task.add_done_callback(lambda done: self._forget(deployment_id, done))

    async def _read_provisioning(self, deployment_id: str, attempts: int = 50) -> Deployment | None:
        """The deployment once its `provisioning` transition is visible, or None if it moved on (deleted,
        stopped). A read right after the transition can still return the previous `pending` state, and
        giving up on it would leave the deployment provisioning forever, so a pending one is read again."""
        for _ in range(attempts):
            doc = await self.repo.get(deployment_id)
            if doc is not None and doc.status == S.PROVISIONING:
                return doc
            if doc is None or doc.status != S.PENDING:
                log.info(
                    "deployment.provision_skipped",
                    deployment_id=deployment_id,
                    status=None if doc is None else doc.status.value,
                )
                return None
            await asyncio.sleep(0.1)
        log.error("deployment.provision_not_visible", deployment_id=deployment_id)
        return None

    def _forget(self, deployment_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(deployment_id) is task:
            del self._tasks[deployment_id]

    async def _provision(self, deployment_id: str) -> None:
        doc = await self._read_provisioning(deployment_id)
        if doc is None:
            return
        version = doc.current
        target = self.targets[doc.target]
        spec = Spec(deployment_id, doc.model_id, version.revision, doc.task, version.version, version.config)
        try:
            endpoint = await target.provision(spec)
        except ProvisionError as exc:
            await self.transition(deployment_id, S.FAILED, reason=str(exc))
            return
        except NotApplied as exc:
            await self.transition(deployment_id, S.PENDING, reason=str(exc), endpoint=exc.endpoint)
            return
        except Exception as exc:  # a target bug still ends the deployment with a reason, never stuck provisioning
            log.exception("deployment.provision_crashed", deployment_id=deployment_id)
            await self.transition(deployment_id, S.FAILED, reason=f"{type(exc).__name__}: {str(exc)[:300]}")
            return
        await self.transition(deployment_id, S.RUNNING, endpoint=endpoint)

    async def delete(self, deployment_id: str) -> Deployment:
        task = self._tasks.pop(deployment_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        doc = await self.repo.get(deployment_id)
        if doc is None:
            raise KeyError(deployment_id)
        await self.targets[doc.target].teardown(deployment_id, doc.endpoint)
        return await self.transition(deployment_id, S.DELETED)

    async def reap(self) -> None:
        """Deployments whose serving process died become `failed` with the exit reason."""
        for target in self.targets.values():
            for deployment_id, reason in target.exited().items():
                try:
                    await self.transition(deployment_id, S.FAILED, reason=reason)
                except Exception:
                    log.exception("deployment.reap_failed", deployment_id=deployment_id)

    async def report(self) -> None:
        """Deployment counts by state, and each running model server's CPU and memory, for /metrics."""
        counts = await self.repo.count_by_state()
        for name in self.targets:
            for status in S:
                DEPLOYMENTS.labels(name, status.value).set(counts.get((name, status.value), 0))
        served: set[tuple[str, str]] = set()
        for doc in await self.repo.with_status([S.RUNNING]):
            target = self.targets.get(doc.target)
            usage = (target.resources(doc.id) if target is not None else None) or {}
            if "cpu_percent" in usage and "memory_rss_bytes" in usage:  # only processes this deployer runs
                key = (doc.target, doc.id)
                SERVER_CPU.labels(*key).set(usage["cpu_percent"])
                SERVER_MEMORY.labels(*key).set(usage["memory_rss_bytes"])
                served.add(key)
        for key in self._served - served:
            SERVER_CPU.remove(*key)
            SERVER_MEMORY.remove(*key)
        self._served = served

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time()
        while True:
            await asyncio.sleep(self._poll_s)
            await self.reap()
            if loop.time() < next_report:
                continue
            # two MongoDB reads: as fresh as a scrape needs, not every poll
            next_report = loop.time() + REPORT_EVERY_S
            try:
                await self.report()
            except Exception:  # metrics must never stop the reaper
                log.exception("deployment.report_failed")
