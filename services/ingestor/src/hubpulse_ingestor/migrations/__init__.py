"""Alembic revisions of the ingestor service (plain SQL; env.py lives in hubpulse_common)."""
