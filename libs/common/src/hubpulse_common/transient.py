"""Is a failure about a dependency being unavailable for now (retry later), or about the input (poison)?

One classification for the Kafka consumers (retry without bound vs dead-letter) and the HTTP scaffold
(503 with Retry-After vs 500).
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from pymongo.errors import ConnectionFailure as MongoConnectionFailure

# PostgreSQL errors that say nothing about the message: the server is restarting, over its connection limit,
# or the transaction lost a race (serialization failure, deadlock, lock timeout); the same work succeeds later.
_TRANSIENT_POSTGRES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # pool closed or closing, connection closed under us
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TransactionRollbackError,
    asyncpg.InsufficientResourcesError,
    asyncpg.LockNotAvailableError,
)
# OSErrors that belong to the input (a path it names), not to the network: deterministic
_FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` says a dependency is unavailable for now (retry later) rather than the message is bad.

    Transient: connection refused, reset or timed out (OSError, asyncio and socket timeouts), PostgreSQL
    restarting or refusing connections, serialization failures and deadlocks, a closed pool, a retriable or
    unreachable-broker Kafka error, MongoDB unreachable. Followed through `raise ... from` causes and
    exception groups (a TaskGroup's failure is transient when any of its members is). Anything else (a
    validation error, a constraint violation, a bug) is poison for the message at hand.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        elif _unavailable(current):
            return True
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    return False


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError):  # includes ConnectionError and TimeoutError (asyncio.TimeoutError is TimeoutError)
        return not isinstance(exc, _FILE_ERRORS)
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaConnectionError | KafkaTimeoutError)
    return isinstance(exc, (*_TRANSIENT_POSTGRES, MongoConnectionFailure))
