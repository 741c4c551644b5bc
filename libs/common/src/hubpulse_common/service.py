"""Run a service: settings, logging, lifespan and uvicorn, with one clear line instead of a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import uvloop
from fastapi import FastAPI

from hubpulse_common.errors import ConfigError, UserFacingError
from hubpulse_common.logging import configure_logging, get_logger
from hubpulse_common.settings import CommonSettings, ServiceSettings, load_settings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

# Batches allocate tens of thousands of short-lived objects (events, dicts, records); with the default
# thresholds the cyclic collector runs constantly and its full passes walk every long-lived object (pandas,
# XGBoost, imported modules). `python -m hubpulse.bench.stages` with and without these: features 19.9k -> 25.4k rows/s.
_GC_THRESHOLDS = (50_000, 20, 100)

log = get_logger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before anything else starts, so a taken port is reported as a setting, not a crash."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP; without it, Nagle holds each response body until the client's delayed ACK
    # (docs/decisions/deployer.md, "The inference hop")
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"HUBPULSE_PORT={port} (host {host}): cannot listen ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after serving, which would kill us before the lifespan drains consumers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


# Idle keep-alive connections: our HTTP clients drop a pooled one after CLIENT_KEEPALIVE_S, and our servers keep
# one open for SERVER_KEEPALIVE_S, longer. The client always closes first, so it never sends a request on a
# connection the server is closing at that instant: it would see the connection dropped, and a POST or PATCH is
# not retried (uvicorn's default is 5 s, under aiohttp's 15). Also longer than a load balancer's usual 60 s.
CLIENT_KEEPALIVE_S = 15.0
SERVER_KEEPALIVE_S = 75


def server_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options for every service process: `serve_app`'s, and the gateway's worker processes'."""
    return {
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
        "ws_ping_interval": 20,
        "timeout_keep_alive": SERVER_KEEPALIVE_S,
        # uvicorn would believe X-Forwarded-For from any loopback peer; trusted proxies are our setting
        # (`HUBPULSE_TRUSTED_PROXIES`, http.ClientAddress)
        "proxy_headers": False,
    }


async def serve_app(app: FastAPI, settings: ServiceSettings) -> None:
    """Own the lifespan outside uvicorn so start-up failures surface as our errors, then serve until SIGTERM."""
    sock = bind_socket(settings.host, settings.port)
    async with app.router.lifespan_context(app):
        server = _Server(uvicorn.Config(app, lifespan="off", **server_options(settings)))
        loop = type(asyncio.get_running_loop())
        log.info("service.listening", host=settings.host, port=settings.port, loop=loop.__module__.split(".")[0])
        await server.serve(sockets=[sock])
    log.info("service.stopped")


def run_service(create_app: Callable[[SettingsT], FastAPI], settings_cls: type[SettingsT]) -> None:
    """Blocking entry point of every service's `__main__`: bad settings or stores give one line and exit 2."""
    name = settings_cls.model_fields["service_name"].default
    try:
        settings = load_settings(settings_cls)
        configure_logging(settings.service_name, settings.log_level, settings.log_format, settings.environment)
        gc.freeze()  # what start-up built lives for good: out of the collector's way
        gc.set_threshold(*_GC_THRESHOLDS)
        # uvloop for every service: asyncpg's COPYs and aiokafka's batches go through the loop's socket writes
        # and selector, which cost the plain asyncio loop CPU on every call (docs/decisions/pipeline-redesign.md)
        uvloop.run(serve_app(create_app(settings), settings))
    except UserFacingError as exc:
        log.error("service.start_failed", error=str(exc))
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


def migrations_dir(package: str) -> Path:
    """Where a service package keeps its Alembic revisions (`<package>/migrations`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"{package} is not installed")
    return Path(spec.origin).parent / "migrations"


async def migrate_services(targets: Sequence[tuple[type[CommonSettings], Path]]) -> None:
    """Apply each service's pending migrations, one after the other (`hubpulse migrate`, `python -m
    <package>.migrate`): the step that runs before a rollout when HUBPULSE_MIGRATE_ON_START is off."""
    from hubpulse_common.resources import migrate_or_check

    for settings_cls, versions in targets:
        settings = load_settings(settings_cls)
        log.info("migrate.start", service=settings.service_name)
        await migrate_or_check(settings, versions, migrate=True)
        log.info("migrate.done", service=settings.service_name)


def run_migrations(settings_cls: type[SettingsT], package: str) -> None:
    """Blocking entry point of every `<package>.migrate` module (the Kubernetes Job, compose's migrate
    service): exit 0 once the schema is current; a bad setting or an unreachable database gives one line, exit 2."""
    name = settings_cls.model_fields["service_name"].default
    try:
        settings = load_settings(settings_cls)
        configure_logging(settings.service_name, settings.log_level, settings.log_format, settings.environment)
        asyncio.run(migrate_services([(settings_cls, migrations_dir(package))]))
    except UserFacingError as exc:
        log.error("migrate.failed", error=str(exc))
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
