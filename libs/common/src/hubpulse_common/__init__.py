"""Shared runtime of the hubpulse services: settings, events, Kafka bus, database, logging, HTTP scaffold."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One version for the whole platform: every pyproject carries the same one (tests/test_project.py checks).
    __version__ = version("hubpulse-common")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
