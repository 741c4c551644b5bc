"""`python -m hubpulse_features.migrate`: apply this service's database migrations, then exit (the pre-rollout step)."""

from hubpulse_common.service import run_migrations
from hubpulse_features.settings import FeaturesSettings


def main() -> None:
    run_migrations(FeaturesSettings, "hubpulse_features")


if __name__ == "__main__":
    main()
