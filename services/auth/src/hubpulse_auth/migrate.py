"""`python -m hubpulse_auth.migrate`: apply this service's database migrations, then exit (the pre-rollout step)."""

from hubpulse_auth.settings import AuthSettings
from hubpulse_common.service import run_migrations


def main() -> None:
    run_migrations(AuthSettings, "hubpulse_auth")


if __name__ == "__main__":
    main()
