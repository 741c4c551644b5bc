"""The remote targets through the gateway: `hf-space` against the replay Hub's Spaces API, `aws-lambda` against moto's
server, `kubernetes` rendered (no cluster here) and validated against the Kubernetes 1.33 schemas."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import kubernetes_validate
import pytest
import yaml
from auth.conftest import serving
from botocore.exceptions import ClientError
from conftest import Store
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from deployer.conftest import PLATFORM_TOKEN, USER_TOKEN, DeployStack, read_topic
from hubpulse.platform.stores import free_port
from hubpulse_common.inference import MODEL_SERVER_TOKEN_VARIABLE, model_server_token
from hubpulse_common.s3 import aws_client, ensure_bucket
from hubpulse_deployer.schemas import DeploymentConfig
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_deployer.targets.aws_lambda import HANDLER, LambdaTarget
from hubpulse_deployer.targets.base import NotApplied, ProvisionError, Spec, TargetUnavailable
from hubpulse_deployer.targets.hf_space import space_files
from hubpulse_deployer.targets.kubernetes import (
    REDACTED,
    UNKNOWN_IMAGE,
    KubernetesTarget,
    own_image,
    render,
    rollout_waiting,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "hubpulse-demo/tiny-text-classifier"
pytestmark = pytest.mark.slow


async def _deploy(stack: DeployStack, target: str, config: dict[str, Any]) -> str:
    async with stack.client() as client:
        response = await client.post("/v1/deployments", json={"model_id": MODEL, "target": target, "config": config})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _aws(stack: DeployStack, service: str) -> Any:
    s = stack.settings
    return boto3.client(
        service,
        endpoint_url=s.s3_endpoint,
        region_name=s.s3_region,
        aws_access_key_id=s.s3_access_key_id.get_secret_value(),
        aws_secret_access_key=s.s3_secret_access_key.get_secret_value(),
    )


async def test_hf_space_created_followed_and_deleted(deploy_stack: DeployStack) -> None:
    config = {"hardware": "cpu-upgrade", "env": {"GREETING": "hi"}, "secrets": {"API_KEY": "s3cret"}}
    deployment_id = await _deploy(deploy_stack, "hf-space", config)
    running = await deploy_stack.wait_status(deployment_id, {"running", "failed"}, timeout_s=30)
    assert running["status"] == "running", running
    space_id = running["endpoint"]["space_id"]
    assert space_id.startswith("hubpulse/hubpulse-")
    assert running["config"]["secrets"] == ["API_KEY"]

    hub = HfApi(endpoint=deploy_stack.hub, token=PLATFORM_TOKEN)
    # the replay Hub is served by this event loop: sync clients call it from a thread
    runtime = await asyncio.to_thread(hub.get_space_runtime, space_id)
    assert runtime.stage == "RUNNING"
    assert runtime.hardware == "cpu-upgrade"
    assert runtime.raw["secrets"] == ["API_KEY"]
    info = await asyncio.to_thread(hub.space_info, space_id)
    files = {s.rfilename for s in info.siblings or []}
    assert {"app.py", "requirements.txt", "README.md"} <= files

    async with deploy_stack.client() as client:
        answer = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": "hello"})
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "not_invocable"
        assert "not reachable from here" in answer.json()["error"]["message"]
        # a new version redeploys to the Space that exists (the Hub answers a second create_repo with 409)
        patched = await client.patch(f"/v1/deployments/{deployment_id}", json={"config": {"hardware": "cpu-basic"}})
        assert patched.status_code == 202, patched.text
        v2 = await deploy_stack.wait_status(deployment_id, {"running", "failed"}, timeout_s=30)
        assert (v2["status"], v2["version"]) == ("running", 2), v2
        assert (await asyncio.to_thread(hub.get_space_runtime, space_id)).hardware == "cpu-basic"
        deleted = await client.delete(f"/v1/deployments/{deployment_id}")
        assert deleted.json()["status"] == "deleted"
    with pytest.raises(RepositoryNotFoundError):
        await asyncio.to_thread(hub.space_info, space_id)


async def test_hf_space_refused_hardware_fails_with_reason(deploy_stack: DeployStack) -> None:
    # allowed here (HUBPULSE_ALLOWED_HARDWARE) but refused by the Hub: the deployment fails with the Hub's reason
    deploy_stack.settings.allowed_hardware.append("quantum-9000")
    try:
        deployment_id = await _deploy(deploy_stack, "hf-space", {"hardware": "quantum-9000"})
    finally:
        deploy_stack.settings.allowed_hardware.remove("quantum-9000")
    failed = await deploy_stack.wait_status(deployment_id, {"running", "failed"}, timeout_s=30)
    assert failed["status"] == "failed", failed
    assert "Invalid hardware" in failed["reason"]


def test_lambda_and_iam_do_not_use_the_s3_endpoint() -> None:
    """Audit M12: with S3 at AWS's S3 endpoint, Lambda and IAM calls went to S3."""
    settings = DeployerSettings(s3_endpoint="https://s3.us-east-1.amazonaws.com", aws_region="eu-west-1")
    target = LambdaTarget(settings)
    assert target._lambda.meta.endpoint_url == "https://lambda.eu-west-1.amazonaws.com"
    assert target._iam.meta.endpoint_url == "https://iam.amazonaws.com"
    local = DeployerSettings(s3_endpoint="http://127.0.0.1:9000", lambda_endpoint="http://127.0.0.1:9001")
    target = LambdaTarget(local)
    assert target._lambda.meta.endpoint_url == "http://127.0.0.1:9001"


def test_lambda_invokes_wait_for_the_function_and_are_not_run_twice() -> None:
    """A synchronous invoke answers when the function returns (timeouts up to 900 s): botocore's 60 s read
    timeout cut a slow cold start, and its standard retries ran the function again, up to 6 times."""
    target = LambdaTarget(DeployerSettings(s3_endpoint="http://127.0.0.1:9000", lambda_endpoint="http://127.0.0.1:1"))
    invoker = target._invoker.meta.config
    assert invoker.read_timeout > 900
    assert invoker.retries["total_max_attempts"] == 1
    assert target._lambda.meta.config.read_timeout == 60, "control calls keep their short timeout and retries"


async def test_a_lambda_invoke_that_cannot_reach_aws_is_a_503_not_a_500() -> None:
    settings = DeployerSettings(s3_endpoint="http://127.0.0.1:9000", lambda_endpoint=f"http://127.0.0.1:{free_port()}")
    target = LambdaTarget(settings)
    with pytest.raises(TargetUnavailable, match="Lambda invoke failed"):  # EndpointConnectionError: BotoCoreError
        await target.predict("e" * 32, {"function_name": "f"}, ["hi"])


def test_a_role_lambda_cannot_assume_yet_is_waited_for() -> None:
    """IAM is eventually consistent: Lambda refuses a role created moments before (boto/boto3#2976)."""
    target = LambdaTarget(DeployerSettings(s3_endpoint="http://127.0.0.1:9000", lambda_endpoint="http://127.0.0.1:1"))
    not_yet = ClientError(
        {
            "Error": {
                "Code": "InvalidParameterValueException",
                "Message": "The role defined for the function cannot be assumed by Lambda.",
            }
        },
        "CreateFunction",
    )
    calls: list[dict[str, Any]] = []

    def create_function(**request: Any) -> dict[str, Any]:
        calls.append(request)
        if len(calls) < 3:
            raise not_yet
        return {"FunctionName": request["FunctionName"]}

    target._lambda = SimpleNamespace(create_function=create_function)
    target._create_function(FunctionName="f", Role="arn:aws:iam::123456789012:role/r")
    assert len(calls) == 3
    other = ClientError({"Error": {"Code": "InvalidParameterValueException", "Message": "bad handler"}}, "Create")
    target._lambda = SimpleNamespace(create_function=lambda **_: (_ for _ in ()).throw(other))
    with pytest.raises(ClientError, match="bad handler"):  # any other refusal is the deployment's failure at once
        target._create_function(FunctionName="f")


def test_a_bucket_is_created_in_its_region(s3: Store) -> None:
    """Outside us-east-1, S3 refuses a bucket created without its region (IllegalLocationConstraintException)."""
    settings = DeployerSettings(s3_endpoint=s3.url, s3_region="eu-west-1", s3_bucket="hubpulse-eu-bucket")
    client = aws_client("s3", settings)
    ensure_bucket(client, settings.s3_bucket)
    ensure_bucket(client, settings.s3_bucket)  # found the second time
    assert client.get_bucket_location(Bucket=settings.s3_bucket)["LocationConstraint"] == "eu-west-1"


def test_lambda_handler_fetches_no_pickled_weights() -> None:
    compile(HANDLER, "handler.py", "exec")
    fetched = HANDLER.split("allow_patterns=", 1)[1].split("]", 1)[0]
    assert "*.safetensors" in fetched
    assert not any(suffix in fetched for suffix in (".bin", ".pt", ".pkl", '*"', "*.*"))


def test_space_app_is_python() -> None:
    spec = Spec("d" * 32, MODEL, "main", "text-classification", 1, DeploymentConfig())
    files = space_files(spec)
    compile(files["app.py"], "app.py", "exec")
    assert b"sdk: gradio" in files["README.md"]
    assert b"transformers" in files["requirements.txt"]


async def test_aws_lambda_function_update_rollback_delete(deploy_stack: DeployStack) -> None:
    deployment_id = await _deploy(deploy_stack, "aws-lambda", {"memory_mb": 512, "timeout_s": 30, "env": {"A": "1"}})
    running = await deploy_stack.wait_status(deployment_id, {"running", "failed"}, timeout_s=30)
    assert running["status"] == "running", running
    endpoint = running["endpoint"]
    name = endpoint["function_name"]
    lam, s3 = _aws(deploy_stack, "lambda"), _aws(deploy_stack, "s3")
    function = lam.get_function(FunctionName=name)["Configuration"]
    assert function["State"] == "Active"
    assert function["MemorySize"] == 512
    assert function["Timeout"] == 30
    assert function["Environment"]["Variables"]["MODEL_ID"] == MODEL
    assert function["Environment"]["Variables"]["A"] == "1"
    url_config = lam.get_function_url_config(FunctionName=name)
    assert endpoint["function_url"] == url_config["FunctionUrl"]
    # audit H6: the URL takes IAM-signed calls only, and no policy lets anyone invoke it
    assert url_config["AuthType"] == "AWS_IAM"
    with pytest.raises(ClientError) as no_policy:
        lam.get_policy(FunctionName=name)
    assert no_policy.value.response["Error"]["Code"] == "ResourceNotFoundException"
    bucket, key = endpoint["artifact"].removeprefix("s3://").split("/", 1)
    package = zipfile.ZipFile(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert "def handler(event, context)" in package.read("handler.py").decode()
    assert running["resources"] == {"memory_mb": 512, "timeout_s": 30}

    async with deploy_stack.client() as client:
        # moto keeps the function but runs its code only through Docker, which is absent here
        answer = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": ["a", "b"]})
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "not_invocable"
        assert "Docker" in answer.json()["error"]["message"]

        # a function made public by an older deployer is closed by its next version
        lam.update_function_url_config(FunctionName=name, AuthType="NONE")
        lam.add_permission(
            FunctionName=name,
            StatementId="public-url",
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            FunctionUrlAuthType="NONE",
        )
        updated = await client.patch(f"/v1/deployments/{deployment_id}", json={"config": {"memory_mb": 1024}})
        assert updated.status_code == 202, updated.text
        v2 = await deploy_stack.wait_status(deployment_id, {"running", "failed"}, timeout_s=30)
        assert v2["status"] == "running", v2
        assert lam.get_function_url_config(FunctionName=name)["AuthType"] == "AWS_IAM"
        with pytest.raises(ClientError):
            lam.get_policy(FunctionName=name)
        assert v2["version"] == 2
        assert lam.get_function(FunctionName=name)["Configuration"]["MemorySize"] == 1024
        assert v2["endpoint"]["artifact"].endswith("/v2.zip")

        rolled = await client.post(f"/v1/deployments/{deployment_id}/rollback", json={})
        assert rolled.status_code == 202, rolled.text
        v3 = await deploy_stack.wait_status(deployment_id, {"running", "failed"}, timeout_s=30)
        assert v3["status"] == "running"
        assert v3["version"] == 3
        configuration = lam.get_function(FunctionName=name)["Configuration"]
        assert configuration["MemorySize"] == 512
        assert configuration["Environment"]["Variables"]["HUBPULSE_DEPLOYMENT_VERSION"] == "3"

        deleted = await client.delete(f"/v1/deployments/{deployment_id}")
        assert deleted.json()["status"] == "deleted"
    with pytest.raises(ClientError) as gone:
        lam.get_function(FunctionName=name)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"lambda/{deployment_id}/").get("KeyCount", 0) == 0


async def test_kubernetes_without_kubeconfig_is_pending_with_valid_manifests(deploy_stack: DeployStack) -> None:
    config = {
        "autoscaling": {"min_replicas": 2, "max_replicas": 6, "target_concurrency": 8},
        "memory_mb": 2048,
        "secrets": {"HF_TOKEN": USER_TOKEN},
        "env": {"LOG_LEVEL": "info"},
    }
    deployment_id = await _deploy(deploy_stack, "kubernetes", config)
    pending = await deploy_stack.wait_status(deployment_id, {"pending", "running", "failed"}, timeout_s=30)
    assert pending["status"] == "pending", pending
    assert pending["reason"].startswith("rendered; no kubeconfig configured")

    async with deploy_stack.client() as client:
        body = (await client.get(f"/v1/deployments/{deployment_id}/manifests")).json()
        as_yaml = await client.get(f"/v1/deployments/{deployment_id}/manifests", params={"format": "yaml"})
        assert as_yaml.headers["content-type"].startswith("application/yaml")
        assert as_yaml.text == body["yaml"]
        answer = await client.post(f"/v1/deployments/{deployment_id}/predict", json={"inputs": "hello"})
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "not_running"
        space = {"model_id": MODEL, "target": "hf-space"}
        other = (await client.post("/v1/deployments", json=space)).json()
        assert (await client.get(f"/v1/deployments/{other['id']}/manifests")).status_code == 404
    objects = list(yaml.safe_load_all(body["yaml"]))
    assert [o["kind"] for o in objects] == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler"]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    secret, deployment, _, hpa = objects
    # the server's token (the stack shares a model-server secret) is kept out of what users see, like theirs
    assert secret["stringData"] == {"HF_TOKEN": REDACTED, MODEL_SERVER_TOKEN_VARIABLE: REDACTED}
    assert "replicas" not in deployment["spec"]  # the HPA's to set
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] == 6
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "2048Mi"
    assert container["readinessProbe"]["httpGet"]
    assert {"name": "LOG_LEVEL", "value": "info"} in container["env"]
    assert MODEL in container["args"]
    # the stack's cluster serves no custom metrics: an HPA naming one could never scale down
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]

    events = await read_topic(
        deploy_stack.kafka, "deploy.events.v1", lambda v: v["deployment_id"] == deployment_id, want=3
    )
    assert [e["status"] for e in events] == ["pending", "provisioning", "pending"]


@pytest.mark.parametrize("scaling", [{"min_replicas": 0, "max_replicas": 1}, {"min_replicas": 3, "max_replicas": 10}])
def test_rendered_objects_are_valid_kubernetes(scaling: dict[str, int]) -> None:
    config = DeploymentConfig.model_validate({"autoscaling": {**scaling, "target_concurrency": 2}, "memory_mb": 512})
    spec = Spec("a" * 32, "org/some.model", "0123abcd", "token-classification", 4, config)
    objects = render(spec, image="registry.example/model-server:1", namespace="models", hf_endpoint="https://hf.co")
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    assert objects[2]["spec"]["minReplicas"] == max(1, scaling["min_replicas"])
    # the HPA owns the count: a `replicas` in the applied Deployment would reset it on every apply (0: the HPA off)
    assert "replicas" not in objects[0]["spec"]


def _deployment(generation: int, wanted: int, **status: Any) -> dict[str, Any]:
    """A Deployment as the API server returns it during a rolling update (the fields kubectl reads)."""
    return {"metadata": {"generation": generation}, "spec": {"replicas": wanted}, "status": status}


def test_a_rollout_is_done_only_when_every_replica_runs_the_new_version() -> None:
    # version 2 applied: the controller has not seen it yet, though the old pod is up
    stale = _deployment(2, 1, observedGeneration=1, replicas=1, updatedReplicas=1, availableReplicas=1)
    assert "not seen" in rollout_waiting(stale)
    # seen: the new pod starts (not ready), the old one still serves (and counts as available)
    surging = _deployment(2, 1, observedGeneration=2, replicas=2, updatedReplicas=1, availableReplicas=1)
    assert "old replicas" in rollout_waiting(surging)
    old_gone = _deployment(2, 2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=1)
    assert "1 of 2 new replicas are available" in rollout_waiting(old_gone)
    partly = _deployment(2, 3, observedGeneration=2, replicas=3, updatedReplicas=2, availableReplicas=3)
    assert "2 of 3 replicas run the new version" in rollout_waiting(partly)
    done = _deployment(2, 2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2)
    assert rollout_waiting(done) == ""


def test_a_rollout_past_its_progress_deadline_fails_with_the_clusters_words() -> None:
    stuck = _deployment(
        3,
        1,
        observedGeneration=3,
        replicas=2,
        updatedReplicas=1,
        availableReplicas=1,
        conditions=[
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "m-7d9c" has timed out progressing.',
            },
        ],
    )
    with pytest.raises(ProvisionError, match="has timed out progressing"):
        rollout_waiting(stuck)


def test_the_pods_take_their_token_and_scale_on_requests_in_flight_where_the_cluster_serves_them() -> None:
    config = DeploymentConfig.model_validate({"autoscaling": {"max_replicas": 4, "target_concurrency": 8}})
    spec = Spec("c" * 32, MODEL, "main", "text-classification", 1, config)
    objects = render(spec, image="i", namespace="n", hf_endpoint="https://hf.co", token="t0k", custom_metrics=True)
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    secret, deployment, _, hpa = objects
    assert secret["stringData"] == {MODEL_SERVER_TOKEN_VARIABLE: "t0k"}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": spec.slug}}]
    cpu, inflight = hpa["spec"]["metrics"]
    assert cpu["resource"]["name"] == "cpu"
    assert inflight["pods"] == {
        "metric": {"name": "hubpulse_inflight_requests"},
        "target": {"type": "AverageValue", "averageValue": "8"},
    }


async def test_the_deployer_calls_a_pod_with_the_token_it_rendered(tmp_path: Path) -> None:
    """The Service's address, called as the deployer does it; the server answers only the token in the Secret."""
    seen: list[str | None] = []
    server = FastAPI()

    @server.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization"))
        return JSONResponse({"outputs": [{"label": "POSITIVE", "score": 0.9}]})

    async with serving(server) as url:
        target = KubernetesTarget(_kubernetes_settings(model_server_secret="shared"))
        spec = Spec("d" * 32, MODEL, "main", "text-classification", 1, DeploymentConfig())
        with pytest.raises(NotApplied) as rendered:  # no cluster: rendered, not applied
            await target.provision(spec)
        endpoint = rendered.value.endpoint
        assert f"stringData:\n  {MODEL_SERVER_TOKEN_VARIABLE}: {REDACTED}" in endpoint["manifests"]
        assert await target.predict(spec.deployment_id, {**endpoint, "url": url}, ["hi"]) == [
            {"label": "POSITIVE", "score": 0.9}
        ]
        await target.close()
    assert seen == [f"Bearer {model_server_token('shared', spec.deployment_id, url)}"]


def test_deployer_role_grants_every_object_the_target_applies() -> None:
    """Audit M12: the Role lacked HPAs and Secrets, so every kubernetes deployment got 403."""
    rbac = Path(__file__).parents[2] / "deploy" / "k8s" / "base" / "rbac.yaml"
    role = next(o for o in yaml.safe_load_all(rbac.read_text()) if o["kind"] == "Role")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    spec = Spec("a" * 32, MODEL, "main", "text-classification", 1, DeploymentConfig(secrets={"HF_TOKEN": "x"}))
    objects = render(spec, image="i", namespace="n", hf_endpoint="https://hf.co")
    assert {o["kind"] for o in objects} == {"Secret", "Deployment", "Service", "HorizontalPodAutoscaler"}
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        verbs = granted.get((group, obj["kind"].lower() + "s"), set())
        # server-side apply is a patch (create when absent); teardown deletes
        assert {"get", "create", "patch", "delete"} <= verbs, obj["kind"]


def _kubernetes_settings(**changes: Any) -> DeployerSettings:
    return DeployerSettings(
        **{
            "kubeconfig": None,
            "kubernetes_namespace": "models",
            "model_server_image": "i",
            "hf_endpoint": "https://hf.co",
            "provision_timeout_s": 1,
            "resource_poll_s": 1,
            "predict_timeout_s": 1,
            **changes,
        }
    )


def test_in_a_cluster_the_service_account_is_used(tmp_path: Path) -> None:
    """Audit M12: without a kubeconfig the target never applied anything, even inside the cluster."""
    (tmp_path / "token").write_text("service-account-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    target = KubernetesTarget(_kubernetes_settings(), environ=environ, service_account=tmp_path)
    assert target.configured
    configuration = target.api_client().configuration
    assert configuration.host == "https://10.0.0.1:443"
    assert "service-account-token" in str(configuration.api_key)
    outside = KubernetesTarget(_kubernetes_settings(), environ={})
    assert not outside.configured


async def test_model_servers_run_on_the_deployers_own_image_unless_one_is_set(tmp_path: Path) -> None:
    """No image of its own is built for the model server: it is the deployer's (HUBPULSE_MODEL_SERVER_IMAGE named
    one that nothing builds, so every kubernetes deployment sat in ImagePullBackOff)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "deployer-7d9f-abcde", "namespace": "hubpulse"},
        "spec": {
            "containers": [
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"},
                {"name": "deployer", "image": "registry.acme.io/hubpulse/deployer:1.4.2"},
            ]
        },
    }
    assert own_image(pod) == "registry.acme.io/hubpulse/deployer:1.4.2"
    with pytest.raises(LookupError):
        own_image({"metadata": {"name": "p"}, "spec": {"containers": []}})
    manifest = yaml.safe_load_all((ROOT / "deploy/k8s/base/services/deployer.yaml").read_text())
    (deployment,) = [m for m in manifest if m and m["kind"] == "Deployment"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "deployer"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HUBPULSE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "HUBPULSE_MODEL_SERVER_IMAGE" not in env
    spec = Spec("e" * 32, MODEL, "main", "text-classification", 1, DeploymentConfig())
    # outside a cluster nothing is applied: the manifests shown say what to set
    with pytest.raises(NotApplied) as rendered:
        await KubernetesTarget(_kubernetes_settings(model_server_image=None), environ={}).provision(spec)
    assert f"image: {UNKNOWN_IMAGE}" in rendered.value.endpoint["manifests"]
    # in a cluster with neither the setting nor its own pod's name: a reason, before anything is applied
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    in_cluster = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    target = KubernetesTarget(
        _kubernetes_settings(model_server_image=None), environ=in_cluster, service_account=tmp_path
    )
    with pytest.raises(ProvisionError, match="set HUBPULSE_MODEL_SERVER_IMAGE"):
        await target.provision(spec)


async def test_a_cluster_refusal_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    """A cluster that answers 403 (RBAC): provisioning fails with the reason; teardown is a 503, not a 500."""
    cluster = FastAPI()

    @cluster.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
    async def forbidden(path: str) -> JSONResponse:
        return JSONResponse(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Forbidden",
                "message": f"forbidden: {path}",
                "code": 403,
            },
            403,
        )

    async with serving(cluster) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "c",
                    "clusters": [{"name": "k", "cluster": {"server": url}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                }
            )
        )
        target = KubernetesTarget(_kubernetes_settings(kubeconfig=kubeconfig, resource_poll_s=0.1))
        spec = Spec("b" * 32, MODEL, "main", "text-classification", 1, DeploymentConfig())
        with pytest.raises(ProvisionError, match="403"):
            await target.provision(spec)
        with pytest.raises(TargetUnavailable, match="refused to delete") as refused:
            await target.teardown(spec.deployment_id, None)
        assert type(refused.value) is TargetUnavailable, "a 503 (deployer errors.HTTP_ERRORS), not a failure"
        await target.close()
