"""`python -m hubpulse_deployer`: run the deployer service."""

import asyncio

import uvloop

from hubpulse_common.service import run_service
from hubpulse_deployer.app import create_app
from hubpulse_deployer.settings import DeployerSettings


def main() -> None:
    # uvloop, as the gateway: predict is on the request path, and the plain asyncio loop's socket writes and
    # selector cost CPU per call (docs/decisions/deployer.md)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run_service(create_app, DeployerSettings)


if __name__ == "__main__":
    main()
