"""`python -m hubpulse_ingestor.migrate`: apply this service's database migrations, then exit (the pre-rollout step)."""

from hubpulse_common.service import run_migrations
from hubpulse_ingestor.settings import IngestorSettings


def main() -> None:
    run_migrations(IngestorSettings, "hubpulse_ingestor")


if __name__ == "__main__":
    main()
