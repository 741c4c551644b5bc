"""Alembic revisions of the gateway service (plain SQL; env.py lives in hubpulse_common)."""
