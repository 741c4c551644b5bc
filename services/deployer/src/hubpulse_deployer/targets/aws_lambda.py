"""`aws-lambda`: a zipped handler in S3, a function created or updated from it, and an IAM-authorised function URL.

The handler downloads the model from the Hub on its first call (cold start) and runs a transformers pipeline;
torch and transformers come from the configured layers. The deployer calls the function with `Invoke`, signed
(SigV4) by botocore with its own credentials; the function URL takes IAM-signed calls only, never anonymous ones.
Provisioning ends with a warm-up invoke: on AWS that
loads the model (a failure is the `failed` reason). moto, the local AWS stand-in, stores and updates functions
faithfully but runs their code only through Docker; without it the warm-up answers "error running docker", and
the deployment is `running` (the function is Active) but marked not invocable, so predict answers 503 saying so.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from hubpulse_common.inference import Input
from hubpulse_common.s3 import aws_client, ensure_bucket
from hubpulse_deployer.documents import Endpoint
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_deployer.targets.base import (
    NOT_INVOCABLE,
    ProvisionError,
    Spec,
    TargetFailed,
    TargetUnavailable,
    Usage,
    slug,
)

HANDLER = '''"""hubpulse model handler: {"inputs": [...]} -> {"outputs": [...]}, called directly or by function URL."""
import json
import os

_pipe = None


def _pipeline():
    global _pipe
    if _pipe is None:
        from huggingface_hub import snapshot_download
        from transformers import pipeline

        model, revision = os.environ["MODEL_ID"], os.environ["MODEL_REVISION"]
        # safetensors weights, configs and tokenizers only: never pickled weights, never other formats
        path = snapshot_download(model, revision=revision, cache_dir="/tmp/hf",
                                 allow_patterns=["*.safetensors", "*.json", "*.txt", "*.model"])
        _pipe = pipeline(os.environ["TASK"], model=path, device="cpu")
    return _pipe


def handler(event, context):
    via_url = "requestContext" in event
    body = json.loads(event.get("body") or "{}") if via_url else event
    if body.get("warmup"):
        _pipeline()
        result = {"ok": True}
    else:
        inputs = body["inputs"]
        result = {"outputs": _pipeline()(inputs if isinstance(inputs, list) else [inputs])}
    if via_url:
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(result)}
    return result
'''
REQUIREMENTS = "transformers>=4.46\ntorch\nhuggingface_hub\n"
RUNTIME = "python3.12"
_ASSUME_ROLE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
_NO_DOCKER = "error running docker"
# the statement an older deployer added to make function URLs public (audit H6): removed where found
_PUBLIC_URL_STATEMENT = "public-url"
# Lambda's longest function timeout (900 s) and a minute for the cold start's own overhead.
INVOKE_READ_TIMEOUT_S = 960
# How long a role just created may take to be usable by Lambda.
ROLE_PROPAGATION_S = 30.0


def _role_not_assumable_yet(exc: BaseException) -> bool:
    """Lambda's answer while a role just created has not reached it (IAM is eventually consistent: seconds)."""
    return (
        isinstance(exc, ClientError)
        and exc.response["Error"]["Code"] == "InvalidParameterValueException"
        and "cannot be assumed" in exc.response["Error"].get("Message", "")
    )


def control_client(service: str, endpoint: str | None, settings: DeployerSettings, *, invoke: bool = False) -> Any:
    """A Lambda or IAM client with the deployer's own endpoint, region and credentials.

    invoke: for synchronous `Invoke` calls, which answer when the function returns (up to its 900 s timeout): read
    up to that long, and never retried by botocore (a timed-out call would run the function again, a cold start
    each time)."""
    keys = {}
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        keys = {
            "aws_access_key_id": settings.aws_access_key_id.get_secret_value(),
            "aws_secret_access_key": settings.aws_secret_access_key.get_secret_value(),
        }
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=settings.aws_region or settings.s3_region,
        config=Config(
            retries={"mode": "standard", **({"total_max_attempts": 1} if invoke else {"max_attempts": 5})},
            connect_timeout=5,
            read_timeout=INVOKE_READ_TIMEOUT_S if invoke else 60,
        ),
        **keys,
    )


def package() -> bytes:
    """The deployment package: the handler and the requirements its layer is built from. Fixed timestamps, so
    the same code gives the same zip (and CodeSha256)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("handler.py", HANDLER), ("requirements.txt", REQUIREMENTS)):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


class LambdaTarget:
    name = "aws-lambda"

    def __init__(self, settings: DeployerSettings) -> None:
        self._lambda = control_client("lambda", settings.lambda_endpoint, settings)
        self._invoker = control_client("lambda", settings.lambda_endpoint, settings, invoke=True)
        self._role_wait_s = ROLE_PROPAGATION_S
        self._iam = control_client("iam", settings.iam_endpoint, settings)
        self._s3 = aws_client("s3", settings)
        self._bucket = settings.s3_bucket
        self._hf_endpoint, self._role_name = settings.hf_endpoint, settings.lambda_role_name
        self._layers = settings.lambda_layers
        self._start_timeout_s, self._poll_s = settings.provision_timeout_s, settings.resource_poll_s
        self._configs: dict[str, Endpoint] = {}

    def _role_arn(self) -> str:
        try:
            arn: str = self._iam.get_role(RoleName=self._role_name)["Role"]["Arn"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            arn = self._iam.create_role(RoleName=self._role_name, AssumeRolePolicyDocument=json.dumps(_ASSUME_ROLE))[
                "Role"
            ]["Arn"]
        return arn

    def _store(self, spec: Spec) -> tuple[str, str]:
        key = f"lambda/{spec.deployment_id}/v{spec.version}.zip"
        ensure_bucket(self._s3, self._bucket)  # created only where it is missing (a 403 is the keys' answer)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=package())
        return self._bucket, key

    def _apply(self, spec: Spec) -> Endpoint:
        bucket, key = self._store(spec)
        config = spec.config
        settings = {
            "Role": self._role_arn(),
            "Handler": "handler.handler",
            "Runtime": RUNTIME,
            "MemorySize": config.memory_mb,
            "Timeout": config.timeout_s,
            "Layers": self._layers,
            "Environment": {
                "Variables": {
                    **config.env,
                    **config.secrets,
                    "MODEL_ID": spec.model_id,
                    "MODEL_REVISION": spec.revision,
                    "TASK": spec.task,
                    "HF_ENDPOINT": self._hf_endpoint,
                    "HUBPULSE_DEPLOYMENT_VERSION": str(spec.version),
                }
            },
        }
        name = spec.slug
        try:
            self._lambda.get_function(FunctionName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            self._create_function(FunctionName=name, Code={"S3Bucket": bucket, "S3Key": key}, Publish=True, **settings)
        else:
            self._lambda.update_function_configuration(FunctionName=name, **settings)
            self._wait(name)
            self._lambda.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key=key, Publish=True)
        configuration = self._wait(name)
        return {
            "function_name": name,
            "function_arn": configuration["FunctionArn"],
            "function_url": self._url(name),
            "artifact": f"s3://{bucket}/{key}",
            "code_sha256": configuration["CodeSha256"],
            "memory_mb": configuration["MemorySize"],
            "timeout_s": configuration["Timeout"],
        }

    def _create_function(self, **request: Any) -> None:
        """`create_function`, waiting out a role that Lambda cannot assume yet (one created moments before)."""
        for attempt in Retrying(
            retry=retry_if_exception(_role_not_assumable_yet),
            stop=stop_after_delay(self._role_wait_s),
            wait=wait_exponential(multiplier=0.5, max=5),
            reraise=True,
        ):
            with attempt:
                self._lambda.create_function(**request)

    def _url(self, name: str) -> str:
        try:
            config = self._lambda.get_function_url_config(FunctionName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            config = self._lambda.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
        if config["AuthType"] != "AWS_IAM":
            # made public by an older deployer: close it
            config = self._lambda.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
            try:
                self._lambda.remove_permission(FunctionName=name, StatementId=_PUBLIC_URL_STATEMENT)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise
        url: str = config["FunctionUrl"]
        return url

    def _wait(self, name: str) -> dict[str, Any]:
        """The function's configuration once it is Active and no update is in progress."""
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            configuration: dict[str, Any] = self._lambda.get_function(FunctionName=name)["Configuration"]
            state, update = configuration.get("State"), configuration.get("LastUpdateStatus")
            if state == "Failed" or update == "Failed":
                reason = configuration.get("StateReason") or configuration.get("LastUpdateStatusReason")
                raise ProvisionError(f"Lambda function {name} failed: {reason}")
            if state == "Active" and update in (None, "Successful"):
                return configuration
            if time.monotonic() > deadline:
                raise ProvisionError(f"Lambda function {name} not Active within {self._start_timeout_s:.0f}s")
            time.sleep(self._poll_s)

    def _invoke(self, name: str, payload: dict[str, Any]) -> Any:
        response = self._invoker.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
        body = response["Payload"].read()
        if response.get("FunctionError"):
            text = body.decode(errors="replace")[:300]
            if _NO_DOCKER in text:
                raise TargetUnavailable(
                    f"Lambda function {name} cannot run here: the AWS endpoint (moto) executes Lambda code only "
                    f"with Docker, and none is available; invocation needs real AWS or Docker ({text})"
                )
            raise TargetFailed(f"Lambda function {name} failed: {text}")
        return json.loads(body)

    def _provision(self, spec: Spec) -> Endpoint:
        try:
            endpoint = self._apply(spec)
        except ClientError as exc:
            raise ProvisionError(f"AWS refused the function: {str(exc)[:300]}") from exc
        try:
            self._invoke(spec.slug, {"warmup": True})
        except (TargetFailed, ClientError, BotoCoreError) as exc:
            raise ProvisionError(f"warm-up failed: {str(exc)[:300]}") from exc
        except TargetUnavailable as exc:
            endpoint[NOT_INVOCABLE] = str(exc)
        self._configs[spec.deployment_id] = endpoint
        return endpoint

    async def provision(self, spec: Spec) -> Endpoint:
        return await asyncio.to_thread(self._provision, spec)

    def _teardown(self, deployment_id: str, endpoint: Endpoint | None) -> None:
        name = (endpoint or {}).get("function_name") or slug(deployment_id)
        try:
            self._lambda.delete_function(FunctionName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        listed = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=f"lambda/{deployment_id}/")
        for item in listed.get("Contents", []):
            self._s3.delete_object(Bucket=self._bucket, Key=item["Key"])

    async def teardown(self, deployment_id: str, endpoint: Endpoint | None) -> None:
        self._configs.pop(deployment_id, None)
        await asyncio.to_thread(self._teardown, deployment_id, endpoint)

    async def predict(self, deployment_id: str, endpoint: Endpoint, inputs: list[Input]) -> list[Any]:
        try:
            answer = await asyncio.to_thread(self._invoke, endpoint["function_name"], {"inputs": inputs})
        except (ClientError, BotoCoreError) as exc:  # BotoCoreError: unreachable, or a read timeout
            raise TargetUnavailable(f"Lambda invoke failed: {str(exc)[:300]}") from exc
        outputs: list[Any] = answer["outputs"]
        return outputs

    def resources(self, deployment_id: str) -> Usage | None:
        config = self._configs.get(deployment_id)
        return None if config is None else {"memory_mb": config["memory_mb"], "timeout_s": config["timeout_s"]}

    async def close(self) -> None:
        return None

    def exited(self) -> dict[str, str]:
        return {}
