"""Deployments as MongoDB documents (PyMongo async). Every state change is guarded by the sequence it read."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from hubpulse_deployer.service import Transition

Doc = dict[str, Any]


class Conflict(Exception):
    """The document moved on since it was read; read it again and re-plan."""


class DeploymentRepository:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])
        await self._c.create_index([("status", ASCENDING)])
        await self._c.create_index([("org_id", ASCENDING), ("status", ASCENDING)])

    async def insert(self, doc: Doc) -> None:
        await self._c.insert_one(doc)

    async def get(self, deployment_id: str) -> Doc | None:
        return await self._c.find_one({"_id": deployment_id})

    async def owned(self, *, owner: str, include_deleted: bool, limit: int) -> list[Doc]:
        query: Doc = {"user_id": owner} if include_deleted else {"user_id": owner, "status": {"$ne": "deleted"}}
        cursor = self._c.find(query).sort("created_at", DESCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def active_of(self, *, org_id: str | None, user_id: str | None, statuses: list[str]) -> list[Doc]:
        """The deployments of an organisation (of the user, without one) in `statuses`: versions and config only."""
        owner: Doc = {"org_id": org_id} if org_id is not None else {"user_id": user_id}
        cursor = self._c.find({**owner, "status": {"$in": statuses}}, {"version": 1, "versions": 1})
        return [doc async for doc in cursor]

    async def with_status(self, statuses: list[str]) -> list[Doc]:
        return [doc async for doc in self._c.find({"status": {"$in": statuses}})]

    async def count_by_state(self) -> dict[tuple[str, str], int]:
        """How many deployments each (target, status) pair has."""
        pipeline = [{"$group": {"_id": {"target": "$target", "status": "$status"}, "n": {"$sum": 1}}}]
        cursor = await self._c.aggregate(pipeline)
        return {(row["_id"]["target"], row["_id"]["status"]): row["n"] async for row in cursor}

    async def apply(self, deployment_id: str, transition: Transition, push_version: Doc | None = None) -> Doc:
        update: Doc = {"$set": transition.set_fields, "$push": {"transitions": transition.log_entry}}
        if push_version is not None:
            update["$push"]["versions"] = push_version
        doc = await self._c.find_one_and_update(
            {"_id": deployment_id, "sequence": transition.expected_sequence},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise Conflict(deployment_id)
        return doc
