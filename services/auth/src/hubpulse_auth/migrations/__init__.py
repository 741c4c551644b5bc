"""Alembic revisions of the auth service (plain SQL; env.py lives in hubpulse_common)."""
