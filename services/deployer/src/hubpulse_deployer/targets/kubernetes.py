"""`kubernetes`: a Deployment of the model server image, a Service in front of it and an HPA scaling it.

`render` is a plain function of the deployment version; the objects are applied with server-side apply (field
manager `hubpulse-deployer`) with a kubeconfig, or with the pod's service account when the deployer runs in a
cluster (deploy/k8s/base/rbac.yaml grants what it applies), then the Deployment is followed until a replica is
available. With neither nothing is applied: the deployment stays `pending` with that reason and the rendered YAML
is kept on the endpoint (`GET /deployments/{id}/manifests`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from hubpulse_common.inference import INFLIGHT_METRIC, MODEL_SERVER_TOKEN_VARIABLE, Input, model_server_token
from hubpulse_deployer.documents import Endpoint
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_deployer.targets.base import (
    NotApplied,
    ProvisionError,
    Spec,
    TargetUnavailable,
    Usage,
    call_model_server,
    slug,
)

# A Kubernetes API object as the cluster takes it (apiVersion, kind, metadata, spec)
Manifest = dict[str, Any]

PORT = 8080
FIELD_MANAGER = "hubpulse-deployer"
REDACTED = "<redacted>"
# where Kubernetes mounts a pod's service account token and the cluster's CA
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _labels(spec: Spec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.slug,
        "app.kubernetes.io/managed-by": "hubpulse",
        "hubpulse.dev/deployment-id": spec.deployment_id,
    }


def _autoscaler_metrics(spec: Spec, custom_metrics: bool) -> list[Manifest]:
    metrics: list[Manifest] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": spec.config.cpu_target_percent},
            },
        }
    ]
    if custom_metrics:  # requests in flight per pod, from the model servers' /metrics (prometheus-adapter)
        target = {"type": "AverageValue", "averageValue": str(spec.config.autoscaling.target_concurrency)}
        metrics.append({"type": "Pods", "pods": {"metric": {"name": INFLIGHT_METRIC}, "target": target}})
    return metrics


def render(
    spec: Spec,
    *,
    image: str,
    namespace: str,
    hf_endpoint: str,
    token: str | None = None,
    custom_metrics: bool = False,
) -> list[Manifest]:
    """Secret (the version's secrets and the server's token, when it has either), Deployment, Service and
    HorizontalPodAutoscaler. `token`: what the model server takes as `Authorization: Bearer` (None: any caller
    the NetworkPolicy admits)."""
    config, name, labels = spec.config, spec.slug, _labels(spec)
    min_replicas, max_replicas = config.autoscaling.min_replicas, config.autoscaling.max_replicas
    memory = f"{config.memory_mb}Mi"
    meta = {"name": name, "namespace": namespace, "labels": labels}
    env = [{"name": k, "value": v} for k, v in sorted(config.env.items())]
    env += [{"name": "HF_ENDPOINT", "value": hf_endpoint}, {"name": "HF_HUB_DISABLE_PROGRESS_BARS", "value": "1"}]
    container: Manifest = {
        "name": "model-server",
        "image": image,
        "command": ["python", "-m", "hubpulse_deployer.model_server"],
        "args": [
            "--model-id",
            spec.model_id,
            "--revision",
            spec.revision,
            "--task",
            spec.task,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "250m", "memory": memory}, "limits": {"memory": memory}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3},
        # the server binds its port once the model is loaded: give the download and load time before liveness
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 60},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
    }
    objects: list[Manifest] = []
    secrets = {**config.secrets, **({MODEL_SERVER_TOKEN_VARIABLE: token} if token else {})}
    if secrets:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": secrets}
        objects.append(secret)
        container["envFrom"] = [{"secretRef": {"name": name}}]
    pod_labels = {**labels, "hubpulse.dev/version": str(spec.version)}
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            # No `replicas`: the HPA below owns the count (kubernetes.io, "Migrating Deployments and StatefulSets to
            # horizontal autoscaling"): each apply would scale it back, and 0 switches the HPA off for good.
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": pod_labels}, "spec": {"containers": [container]}},
            },
        }
    )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": {"app.kubernetes.io/name": name},
                "type": "ClusterIP",
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )
    # An HPA cannot go below one replica (scale to zero needs an alpha gate): min 0 runs one.
    objects.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": max(1, min_replicas),
                "maxReplicas": max_replicas,
                "metrics": _autoscaler_metrics(spec, custom_metrics),
            },
        }
    )
    return objects


def rollout_waiting(deployment: Mapping[str, Any]) -> str:
    """What a Deployment's rollout still waits for ("" once done), as `kubectl rollout status` judges it
    (kubectl/pkg/polymorphichelpers/rollout_status.go): the controller has seen the latest spec, every replica
    runs it, no old one is left, and the new ones are available (old pods count in `availableReplicas` too).
    Raises ProvisionError when the rollout exceeded its progress deadline (a crash-looping or unschedulable pod)."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return "the controller has not seen the new spec yet"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise ProvisionError(f"the rollout stopped progressing: {condition.get('message') or 'deadline exceeded'}")
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < wanted:
        return f"{updated} of {wanted} replicas run the new version"
    if status.get("replicas", 0) > updated:
        return f"{status.get('replicas', 0) - updated} old replicas are still terminating"
    if status.get("availableReplicas", 0) < updated:
        return f"{status.get('availableReplicas', 0)} of {updated} new replicas are available"
    return ""


def to_yaml(objects: list[Manifest]) -> str:
    """The objects as one YAML stream, secret values replaced: it is stored and shown to users."""
    shown = [
        {**o, "stringData": dict.fromkeys(o["stringData"], REDACTED)} if o["kind"] == "Secret" else o for o in objects
    ]
    return yaml.safe_dump_all(shown, sort_keys=False)


# what rendered manifests name as the image when no cluster tells the deployer's own (nothing is applied then)
UNKNOWN_IMAGE = "set-hubpulse-model-server-image"


def own_image(pod: Manifest, container: str = "deployer") -> str:
    """The image of a pod's `container` (the deployer's, from its own Pod object), else of its first one."""
    containers = pod.get("spec", {}).get("containers") or []
    chosen = next((c for c in containers if c.get("name") == container), containers[0] if containers else None)
    if chosen is None or not chosen.get("image"):
        raise LookupError(f"pod {pod.get('metadata', {}).get('name')} names no container image")
    image: str = chosen["image"]
    return image


class KubernetesTarget:
    name = "kubernetes"

    def __init__(
        self,
        settings: DeployerSettings,
        *,
        environ: Mapping[str, str] = os.environ,
        service_account: Path = SERVICE_ACCOUNT,
    ) -> None:
        self._kubeconfig, self._namespace = settings.kubeconfig, settings.kubernetes_namespace
        self._image, self._pod = settings.model_server_image, settings.pod_name
        # in a pod, Kubernetes sets KUBERNETES_SERVICE_HOST/PORT and mounts the service account
        self._environ, self._service_account = environ, service_account
        self._hf_endpoint = settings.hf_endpoint
        self._custom_metrics = settings.kubernetes_custom_metrics
        secret = settings.model_server_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        self._start_timeout_s, self._poll_s = settings.provision_timeout_s, settings.resource_poll_s
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(settings.predict_timeout_s, connect=3.0))

    @property
    def configured(self) -> bool:
        return self._kubeconfig is not None or bool(self._environ.get("KUBERNETES_SERVICE_HOST"))

    def api_client(self) -> Any:
        """A client from the kubeconfig, else from the pod's service account (in-cluster)."""
        from kubernetes import client, config

        if self._kubeconfig is not None:
            return config.new_client_from_config(config_file=str(self._kubeconfig))  # type: ignore[no-untyped-call]
        configuration = client.Configuration()
        loader = config.incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(self._service_account / "token"),
            cert_filename=str(self._service_account / "ca.crt"),
            environ=self._environ,
        )
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)

    def _dynamic(self) -> Any:
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.api_client())  # type: ignore[no-untyped-call]

    def _apply(self, objects: list[Manifest]) -> None:
        client = self._dynamic()
        for obj in objects:
            resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.server_side_apply(
                body=obj,
                name=obj["metadata"]["name"],
                namespace=self._namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )

    def _follow(self, name: str, version: int) -> None:
        deployments = self._dynamic().resources.get(api_version="apps/v1", kind="Deployment")
        deadline = time.monotonic() + self._start_timeout_s
        waiting = "not observed yet"
        while time.monotonic() < deadline:
            waiting = rollout_waiting(deployments.get(name=name, namespace=self._namespace).to_dict())
            if not waiting:
                return
            time.sleep(self._poll_s)
        raise ProvisionError(
            f"Deployment {name} (version {version}) not rolled out within {self._start_timeout_s:.0f}s: {waiting}"
        )

    def _token(self, deployment_id: str, url: str) -> str | None:
        return model_server_token(self._secret, deployment_id, url) if self._secret else None

    def _own_image(self) -> str:
        pods = self._dynamic().resources.get(api_version="v1", kind="Pod")
        return own_image(pods.get(name=self._pod, namespace=self._namespace).to_dict())

    async def _server_image(self) -> str:
        """HUBPULSE_MODEL_SERVER_IMAGE, else the deployer's own image, read once from its pod. Raises ProvisionError
        when neither is known (outside a cluster: the rendered manifests name the setting instead)."""
        if self._image is None and self._pod is not None and self.configured:
            from kubernetes.client.exceptions import ApiException

            try:
                self._image = await asyncio.to_thread(self._own_image)
            except (ApiException, LookupError) as exc:
                raise ProvisionError(f"cannot read the deployer's own image from pod {self._pod}: {exc}") from exc
        if self._image is None:
            raise ProvisionError(
                "no model server image: set HUBPULSE_MODEL_SERVER_IMAGE (the deployer's image carries the model "
                "server), or run the deployer in the cluster with HUBPULSE_POD_NAME (deploy/k8s sets it)"
            )
        return self._image

    async def provision(self, spec: Spec) -> Endpoint:
        url = f"http://{spec.slug}.{self._namespace}.svc.cluster.local"
        image = await self._server_image() if self.configured else (self._image or UNKNOWN_IMAGE)
        objects = render(
            spec,
            image=image,
            namespace=self._namespace,
            hf_endpoint=self._hf_endpoint,
            token=self._token(spec.deployment_id, url),
            custom_metrics=self._custom_metrics,
        )
        endpoint: Endpoint = {
            "namespace": self._namespace,
            "name": spec.slug,
            "manifests": to_yaml(objects),
            "url": url,
        }
        if not self.configured:
            raise NotApplied(
                "rendered; no kubeconfig configured and not running in a cluster, so nothing was applied (see the "
                "manifests)",
                endpoint,
            )
        from kubernetes.client.exceptions import ApiException

        try:
            await asyncio.to_thread(self._apply, objects)
            await asyncio.to_thread(self._follow, spec.slug, spec.version)
        except ApiException as exc:
            raise ProvisionError(f"the cluster refused the manifests: {exc.status} {exc.reason}") from exc
        return endpoint

    def _delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        client = self._dynamic()
        for api_version, kind in (
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("v1", "Service"),
            ("apps/v1", "Deployment"),
            ("v1", "Secret"),
        ):
            try:
                client.resources.get(api_version=api_version, kind=kind).delete(name=name, namespace=self._namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    async def teardown(self, deployment_id: str, endpoint: Endpoint | None) -> None:
        if not self.configured:
            return
        from kubernetes.client.exceptions import ApiException

        name = (endpoint or {}).get("name") or slug(deployment_id)
        try:
            await asyncio.to_thread(self._delete, name)
        except ApiException as exc:
            # e.g. 403: the service account lacks a permission (deploy/k8s/base/rbac.yaml); the deployment stays
            raise TargetUnavailable(f"the cluster refused to delete {name}: {exc.status} {exc.reason}") from exc

    async def predict(self, deployment_id: str, endpoint: Endpoint, inputs: list[Input]) -> list[Any]:
        # the Service's cluster DNS name: reachable when the deployer runs in the same cluster
        url = str(endpoint["url"])
        token = self._token(deployment_id, url)
        headers = {"authorization": f"Bearer {token}"} if token else None
        return await call_model_server(self._client, url, inputs, "the Service", headers)

    def resources(self, deployment_id: str) -> Usage | None:
        return None

    async def close(self) -> None:
        await self._client.aclose()

    def exited(self) -> dict[str, str]:
        return {}
