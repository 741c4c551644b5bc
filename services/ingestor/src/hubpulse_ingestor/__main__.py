"""`python -m hubpulse_ingestor`: run the ingestor service."""

from hubpulse_common.service import run_service
from hubpulse_ingestor.app import create_app
from hubpulse_ingestor.settings import IngestorSettings


def main() -> None:
    run_service(create_app, IngestorSettings)


if __name__ == "__main__":
    main()
