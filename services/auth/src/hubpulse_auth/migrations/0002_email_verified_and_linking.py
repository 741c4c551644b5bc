"""Whether an account's email is proven (only then may Sign in with HF link to it by email), and the account a
signed-in user's HF sign-in should link to.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SCHEMA = (
    # existing accounts: an email from a Hugging Face sign-in was verified there, a signup's never was
    "ALTER TABLE auth_users ADD COLUMN email_verified boolean NOT NULL DEFAULT false",
    """UPDATE auth_users SET email_verified = true
       WHERE hf_sub IS NOT NULL AND password_hash IS NULL AND email IS NOT NULL""",
    "ALTER TABLE auth_oauth_states ADD COLUMN link_user_id uuid REFERENCES auth_users(id) ON DELETE CASCADE",
)


def upgrade() -> None:
    for statement in _SCHEMA:
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE auth_oauth_states DROP COLUMN link_user_id")
    op.execute("ALTER TABLE auth_users DROP COLUMN email_verified")
