"""`python -m hubpulse_metrics`: run the metrics service."""

from hubpulse_common.service import run_service
from hubpulse_metrics.app import create_app
from hubpulse_metrics.settings import MetricsSettings


def main() -> None:
    run_service(create_app, MetricsSettings)


if __name__ == "__main__":
    main()
