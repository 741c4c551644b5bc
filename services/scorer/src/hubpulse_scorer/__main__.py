"""`python -m hubpulse_scorer`: run the scorer service."""

from hubpulse_common.service import run_service
from hubpulse_scorer.app import create_app
from hubpulse_scorer.settings import ScorerSettings


def main() -> None:
    run_service(create_app, ScorerSettings)


if __name__ == "__main__":
    main()
