"""Alembic revisions of the features service (plain SQL; env.py lives in hubpulse_common)."""
