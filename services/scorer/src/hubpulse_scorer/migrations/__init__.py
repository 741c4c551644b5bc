"""Alembic revisions of the scorer service (plain SQL; env.py lives in hubpulse_common)."""
