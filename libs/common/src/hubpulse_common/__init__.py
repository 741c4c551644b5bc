"""Shared runtime of the hubpulse services: settings, events, Kafka bus, database, logging, HTTP scaffold."""
