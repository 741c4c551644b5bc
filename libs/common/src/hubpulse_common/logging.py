"""Structured JSON logs (structlog) with the request/trace id of the work in hand on every line."""

from __future__ import annotations

import logging
import secrets
import sys
from contextvars import ContextVar
from typing import Any

import structlog

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

TRACE_HEADER = "x-request-id"


def new_trace_id() -> str:
    return secrets.token_hex(16)  # random as uuid4().hex (128 bits, not 122), without a UUID object per call


def current_trace_id() -> str | None:
    return trace_id_var.get()


def _add_trace_id(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    trace_id = trace_id_var.get()
    if trace_id is not None:
        event_dict.setdefault("trace_id", trace_id)
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "json", environment: str | None = None) -> None:
    """Route structlog and stdlib logging (uvicorn, aiokafka) through one JSON renderer on stderr."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_id,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # every line says which service and which deployment (dev / test / prod) wrote it, for shared log stores
    structlog.contextvars.bind_contextvars(service=service, **({"environment": environment} if environment else {}))
    # Chatty libraries: keep their warnings, drop their per-request noise.
    for noisy in ("aiokafka", "uvicorn.access", "botocore", "urllib3", "httpx", "pymongo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
