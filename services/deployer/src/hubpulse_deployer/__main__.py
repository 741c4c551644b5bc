"""`python -m hubpulse_deployer`: run the deployer service."""

from hubpulse_common.service import run_service
from hubpulse_deployer.app import create_app
from hubpulse_deployer.settings import DeployerSettings


def main() -> None:
    run_service(create_app, DeployerSettings)  # on uvloop, as every service


if __name__ == "__main__":
    main()
