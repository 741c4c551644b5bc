"""Users, organisations and roles, signing keys, refresh-token families, API keys, OAuth sign-in states.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# One statement per execute: asyncpg prepares each, and a prepared statement holds one command.
_SCHEMA = (
    """
    CREATE TABLE auth_users (
        id            uuid PRIMARY KEY,
        email         text UNIQUE,           -- normalised, NULL for a Hugging Face account without email
        name          text,
        password_hash text,                  -- argon2id, NULL when the account only signs in with HF
        hf_sub        text UNIQUE,
        hf_username   text,
        created_at    timestamptz NOT NULL DEFAULT now(),
        updated_at    timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE auth_orgs (
        id         uuid PRIMARY KEY,
        name       text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE auth_memberships (
        org_id  uuid NOT NULL REFERENCES auth_orgs(id) ON DELETE CASCADE,
        user_id uuid NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
        role    text NOT NULL CHECK (role IN ('viewer', 'member', 'admin')),
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (org_id, user_id)
    )
    """,
    """
    CREATE INDEX auth_memberships_user ON auth_memberships (user_id, created_at)
    """,
    """
    CREATE TABLE auth_signing_keys (
        kid         text PRIMARY KEY,
        alg         text NOT NULL,
        public_jwk  jsonb NOT NULL,
        private_jwk bytea NOT NULL,          -- Fernet-encrypted with HUBPULSE_SIGNING_KEY_SECRET
        created_at  timestamptz NOT NULL DEFAULT now(),
        retired_at  timestamptz
    )
    """,
    """
    CREATE TABLE auth_token_families (
        id         uuid PRIMARY KEY,
        user_id    uuid NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
        org_id     uuid NOT NULL REFERENCES auth_orgs(id) ON DELETE CASCADE,
        csrf_hash  text,                     -- web sessions only: sha256 of the CSRF token
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
    )
    """,
    """
    CREATE TABLE auth_refresh_tokens (
        token_hash text PRIMARY KEY,         -- sha256 of the token, the token itself is never stored
        family_id  uuid NOT NULL REFERENCES auth_token_families(id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        used_at    timestamptz
    )
    """,
    """
    CREATE INDEX auth_refresh_tokens_family ON auth_refresh_tokens (family_id)
    """,
    """
    CREATE TABLE auth_api_keys (
        id           text PRIMARY KEY,
        user_id      uuid NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
        org_id       uuid NOT NULL REFERENCES auth_orgs(id) ON DELETE CASCADE,
        name         text NOT NULL,
        scopes       text[] NOT NULL,
        secret_hash  text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        revoked_at   timestamptz
    )
    """,
    """
    CREATE INDEX auth_api_keys_owner ON auth_api_keys (user_id, org_id)
    """,
    """
    CREATE TABLE auth_oauth_states (
        state         text PRIMARY KEY,
        code_verifier text NOT NULL,
        nonce         text NOT NULL,
        return_to     text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now()
    )
    """,
)


def upgrade() -> None:
    for statement in _SCHEMA:
        op.execute(statement)


def downgrade() -> None:
    op.execute(
        "DROP TABLE auth_oauth_states, auth_api_keys, auth_refresh_tokens, auth_token_families, "
        "auth_signing_keys, auth_memberships, auth_orgs, auth_users"
    )
