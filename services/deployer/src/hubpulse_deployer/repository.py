"""Deployments as MongoDB documents (PyMongo async). Every state change is guarded by the sequence it read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cachetools import TTLCache
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from hubpulse_common.events import DeploymentStatus
from hubpulse_deployer.documents import ActiveVersion, Deployment, Version
from hubpulse_deployer.schemas import DeploymentConfig
from hubpulse_deployer.service import Transition

Doc = dict[str, Any]


class Conflict(Exception):
    """The document moved on since it was read; read it again and re-plan."""


def _loaded(doc: Doc | None) -> Deployment | None:
    return None if doc is None else Deployment.model_validate(doc)


def _update(transition: Transition, push_version: Version | None) -> Doc:
    entry = transition.entry
    set_fields: Doc = {
        "status": entry.status.value,
        "reason": entry.reason,
        "sequence": entry.sequence,
        "updated_at": entry.at,
        "version": entry.version,
    }
    if transition.endpoint is not None:
        set_fields["endpoint"] = transition.endpoint
    push: Doc = {"transitions": entry.to_mongo()}
    if push_version is not None:
        push["versions"] = push_version.to_mongo()
    return {"$set": set_fields, "$push": push}


class DeploymentRepository:
    def __init__(self, collection: AsyncCollection[Doc], recent_max_age_s: float = 1.0) -> None:
        self._c = collection
        # documents read for the predict path, so a call does not cost a MongoDB round trip; every write of this
        # process drops its entry, so only another replica's write can be seen up to `recent_max_age_s` late
        self._recent: TTLCache[str, Deployment] | None = (
            TTLCache(maxsize=10_000, ttl=recent_max_age_s) if recent_max_age_s > 0 else None
        )

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])
        await self._c.create_index([("status", ASCENDING)])
        await self._c.create_index([("org_id", ASCENDING), ("status", ASCENDING)])

    async def insert(self, doc: Deployment) -> None:
        await self._c.insert_one(doc.to_mongo())
        self._forget(doc.id)

    def _forget(self, deployment_id: str) -> None:
        if self._recent is not None:
            self._recent.pop(deployment_id, None)

    async def get(self, deployment_id: str) -> Deployment | None:
        return _loaded(await self._c.find_one({"_id": deployment_id}))

    async def get_recent(self, deployment_id: str) -> Deployment | None:
        """`get`, or the same document read less than `recent_max_age_s` ago (not to be written back)."""
        if self._recent is None:
            return await self.get(deployment_id)
        doc = self._recent.get(deployment_id)
        if doc is None:
            doc = await self.get(deployment_id)
            if doc is not None:
                self._recent[deployment_id] = doc
        return doc

    async def owned(self, *, owner: str, include_deleted: bool, limit: int) -> list[Deployment]:
        query: Doc = {"user_id": owner} if include_deleted else {"user_id": owner, "status": {"$ne": "deleted"}}
        cursor = self._c.find(query).sort("created_at", DESCENDING).limit(limit)
        return [Deployment.model_validate(doc) async for doc in cursor]

    async def active_of(
        self, *, org_id: str | None, user_id: str | None, statuses: Sequence[DeploymentStatus]
    ) -> list[ActiveVersion]:
        """The deployments of an organisation (of the user, without one) in `statuses`: their current configs."""
        owner: Doc = {"org_id": org_id} if org_id is not None else {"user_id": user_id}
        cursor = self._c.find({**owner, "status": {"$in": _values(statuses)}}, {"version": 1, "versions": 1})
        return [
            ActiveVersion(id=doc["_id"], config=DeploymentConfig.model_validate(_current(doc)["config"]))
            async for doc in cursor
        ]

    async def with_status(self, statuses: Sequence[DeploymentStatus]) -> list[Deployment]:
        cursor = self._c.find({"status": {"$in": _values(statuses)}})
        return [Deployment.model_validate(doc) async for doc in cursor]

    async def count_by_state(self) -> dict[tuple[str, str], int]:
        """How many deployments each (target, status) pair has."""
        pipeline = [{"$group": {"_id": {"target": "$target", "status": "$status"}, "n": {"$sum": 1}}}]
        cursor = await self._c.aggregate(pipeline)
        return {(row["_id"]["target"], row["_id"]["status"]): row["n"] async for row in cursor}

    async def apply(
        self, deployment_id: str, transition: Transition, push_version: Version | None = None
    ) -> Deployment:
        try:
            doc = await self._c.find_one_and_update(
                {"_id": deployment_id, "sequence": transition.expected_sequence},
                _update(transition, push_version),
                return_document=ReturnDocument.AFTER,
            )
        finally:
            self._forget(deployment_id)  # also when the write's outcome is unknown (an error after sending it)
        if doc is None:
            raise Conflict(deployment_id)
        return Deployment.model_validate(doc)


def _values(statuses: Sequence[DeploymentStatus]) -> list[str]:
    return [status.value for status in statuses]


def _current(doc: Doc) -> Doc:
    current: Doc = next(v for v in doc["versions"] if v["version"] == doc["version"])
    return current
