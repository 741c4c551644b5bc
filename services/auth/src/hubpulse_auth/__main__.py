"""`python -m hubpulse_auth`: run the auth service."""

from hubpulse_auth.app import create_app
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.service import run_service


def main() -> None:
    run_service(create_app, AuthSettings)


if __name__ == "__main__":
    main()
