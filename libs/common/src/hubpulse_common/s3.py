"""S3 (MinIO in compose, moto's server locally) through boto3; calls are blocking, run them in a thread."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hubpulse_common.errors import ConfigError
from hubpulse_common.settings import CommonSettings


def aws_client(service: str, settings: CommonSettings) -> Any:
    """A boto3 client for `service` ('s3', 'lambda', ...) at the configured endpoint."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id.get_secret_value(),
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


def bucket_location(region: str | None) -> dict[str, Any]:
    """`create_bucket`'s location for `region`: S3 refuses a bucket created outside us-east-1 without one
    (IllegalLocationConstraintException), and one naming us-east-1 (its default)."""
    if not region or region == "us-east-1":
        return {}
    return {"CreateBucketConfiguration": {"LocationConstraint": region}}


def ensure_bucket(client: Any, bucket: str) -> None:
    """Create the bucket if it does not exist (idempotent)."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        client.create_bucket(Bucket=bucket, **bucket_location(client.meta.region_name))
    except BotoCoreError as exc:
        raise ConfigError(f"HUBPULSE_S3_ENDPOINT: cannot reach S3 ({exc})") from None
