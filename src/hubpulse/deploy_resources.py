"""The Kubernetes overlays' resource patches, generated from deploy/resources.yaml (the one place each service's
memory and CPU are set; docker-compose.yml is checked against it by tests/deploy).

`python -m hubpulse.deploy_resources` (`make deploy-resources`) rewrites deploy/k8s/overlays/{prod,dev}/resources.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, model_validator

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "resources.yaml"
Overlay = Literal["prod", "dev"]
OVERLAYS: tuple[Overlay, ...] = ("prod", "dev")


class Cpu(BaseModel):
    """Kubernetes CPU quantities: "250m", "1"."""

    request: str
    limit: str


class Memory(BaseModel):
    request: int
    limit: int

    @model_validator(mode="after")
    def _ordered(self) -> Memory:
        if not 0 < self.request <= self.limit:
            raise ValueError(f"memory request {self.request} Mi must be > 0 and <= the limit {self.limit} Mi")
        return self


class ServiceResources(BaseModel):
    peak_mb: int | None
    memory_mib: Memory
    cpu: Cpu

    @model_validator(mode="after")
    def _covers_the_peak(self) -> ServiceResources:
        if self.peak_mb is not None and self.memory_mib.request * 2**20 < self.peak_mb * 10**6:
            raise ValueError(
                f"memory request {self.memory_mib.request} Mi is below the measured peak {self.peak_mb} MB"
            )
        return self


def load() -> dict[str, ServiceResources]:
    services = yaml.safe_load(SOURCE.read_text())["services"]
    return {name: ServiceResources.model_validate(spec) for name, spec in services.items()}


def millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def container_resources(spec: ServiceResources, overlay: Overlay) -> dict[str, dict[str, str]]:
    """The container's `resources` in an overlay (dev: a quarter of prod's memory request and 50m, prod's limits)."""
    memory, cpu = spec.memory_mib.request, spec.cpu.request
    if overlay == "dev":
        memory, cpu = max(128, memory // 4), "50m"
    return {
        "requests": {"cpu": cpu, "memory": f"{memory}Mi"},
        "limits": {"cpu": spec.cpu.limit, "memory": f"{spec.memory_mib.limit}Mi"},
    }


def compose_resources(spec: ServiceResources) -> dict[str, dict[str, str]]:
    """docker-compose.yml's `deploy.resources`: prod's limits, and its requests as reservations."""
    return {
        "limits": {"cpus": f"{millicores(spec.cpu.limit) / 1000:.2f}", "memory": f"{spec.memory_mib.limit}M"},
        "reservations": {
            "cpus": f"{millicores(spec.cpu.request) / 1000:.2f}",
            "memory": f"{spec.memory_mib.request}M",
        },
    }


def render(overlay: Overlay) -> str:
    header = (
        "# GENERATED from deploy/resources.yaml by `make deploy-resources`: edit that file, not this one. It says\n"
        "# which peak each value covers and where it was measured.\n"
    )
    patches = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "template": {"spec": {"containers": [{"name": name, "resources": container_resources(spec, overlay)}]}}
            },
        }
        for name, spec in load().items()
    ]
    return header + yaml.safe_dump_all(patches, sort_keys=False, default_flow_style=None, width=120)


def overlay_file(overlay: Overlay) -> Path:
    return ROOT / "deploy" / "k8s" / "overlays" / overlay / "resources.yaml"


def main() -> None:
    for overlay in OVERLAYS:
        overlay_file(overlay).write_text(render(overlay))
        print(f"wrote {overlay_file(overlay).relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
