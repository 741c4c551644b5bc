"""Python client of the hubpulse API: search, watches and alerts, deployments and predictions."""

from hubpulse_client.client import AsyncHubpulseClient, HubpulseClient
from hubpulse_client.errors import DeploymentFailed, HubpulseError, RetryableError

__all__ = ["AsyncHubpulseClient", "DeploymentFailed", "HubpulseClient", "HubpulseError", "RetryableError"]
