"""`python -m hubpulse_gateway`: run the gateway service."""

from hubpulse_common.service import run_service

from hubpulse_gateway.app import create_app
from hubpulse_gateway.settings import GatewaySettings


def main() -> None:
    run_service(create_app, GatewaySettings)


if __name__ == "__main__":
    main()
