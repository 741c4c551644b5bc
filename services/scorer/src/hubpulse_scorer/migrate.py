"""`python -m hubpulse_scorer.migrate`: apply this service's database migrations, then exit (the pre-rollout step)."""

from hubpulse_common.service import run_migrations
from hubpulse_scorer.settings import ScorerSettings


def main() -> None:
    run_migrations(ScorerSettings, "hubpulse_scorer")


if __name__ == "__main__":
    main()
