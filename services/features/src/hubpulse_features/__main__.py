"""`python -m hubpulse_features`: run the features service."""

from hubpulse_common.memory import keep_large_arrays_apart
from hubpulse_common.service import run_service
from hubpulse_features.app import create_app
from hubpulse_features.settings import FeaturesSettings


def main() -> None:
    # a close holds the day's frames for seconds: their memory goes back when they go
    keep_large_arrays_apart()
    run_service(create_app, FeaturesSettings)


if __name__ == "__main__":
    main()
