"""MongoDB through PyMongo's native async API (motor is deprecated)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from hubpulse_common.errors import ConfigError


async def connect_mongo(url: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[dict[str, Any]]:
    """A client that has answered a ping, or `ConfigError` naming HUBPULSE_MONGO_URL."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, uuidRepresentation="standard"
    )
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        await client.close()
        raise ConfigError(f"HUBPULSE_MONGO_URL: cannot reach MongoDB ({str(exc)[:200]})") from None
    return client
