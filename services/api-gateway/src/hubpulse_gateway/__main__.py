"""`python -m hubpulse_gateway`: run the gateway service (`HUBPULSE_WORKERS=N` for N processes on one port)."""

import contextlib

import uvicorn

from hubpulse_common.errors import ConfigError
from hubpulse_common.service import run_service, server_options
from hubpulse_common.settings import load_settings
from hubpulse_gateway.app import create_app
from hubpulse_gateway.settings import GatewaySettings


def _serve_workers() -> bool:
    """Several worker processes through uvicorn's supervisor; False when one process is asked for."""
    with contextlib.suppress(ConfigError):  # run_service reports bad settings as one line
        settings = load_settings(GatewaySettings)
        if settings.workers > 1:
            uvicorn.run(
                "hubpulse_gateway.app:create_app_from_env",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=settings.workers,
                **server_options(settings),
            )
            return True
    return False


def main() -> None:
    if not _serve_workers():
        run_service(create_app, GatewaySettings)


if __name__ == "__main__":
    main()
