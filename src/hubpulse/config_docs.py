"""docs/configuration.md, generated from the settings classes: `python -m hubpulse.config_docs > docs/configuration.md`.

Every `HUBPULSE_*` variable any service reads, with its type, default, the services that read it and what it
does (the field's `description`, else the comment written above or beside the field). A test fails when the
committed file and this output differ.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from hubpulse_auth.settings import AuthSettings
from hubpulse_common.settings import KafkaSecuritySettings
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_features.settings import FeaturesSettings
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_scorer.settings import ScorerSettings

# service -> its settings classes (the Kafka client settings are read by every service that talks to Kafka)
SERVICES: dict[str, tuple[type[BaseSettings], ...]] = {
    "gateway": (GatewaySettings, KafkaSecuritySettings),
    "auth": (AuthSettings,),
    "ingestor": (IngestorSettings, KafkaSecuritySettings),
    "features": (FeaturesSettings, KafkaSecuritySettings),
    "scorer": (ScorerSettings, KafkaSecuritySettings),
    "deployer": (DeployerSettings, KafkaSecuritySettings),
    "metrics": (MetricsSettings, KafkaSecuritySettings),
}


@dataclass
class Variable:
    names: tuple[str, ...]
    type: str
    default: str
    description: str
    services: list[str] = field(default_factory=list)


def variable_names(cls: type[BaseSettings], name: str, info: FieldInfo) -> tuple[str, ...]:
    alias = info.validation_alias
    if alias is None:
        return (str(cls.model_config.get("env_prefix", "")) + name.upper(),)
    return tuple(str(choice) for choice in getattr(alias, "choices", [alias]))


def _comments(cls: type[BaseSettings]) -> dict[str, str]:
    """field -> the comment block right above its line, or the comment at its end."""
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            block: list[str] = []
            above = node.lineno - 2
            while above >= 0 and lines[above].strip().startswith("#"):
                block.insert(0, lines[above].strip().lstrip("#").strip())
                above -= 1
            if not block and "#" in line:
                block = [line.split("#", 1)[1].strip()]
            found[node.target.id] = " ".join(block)
    return found


def _describe(cls: type[BaseSettings], name: str, info: FieldInfo) -> str:
    if info.description:
        return info.description
    # the comment where the field is declared, else where a base class declares it (a subclass may only
    # change the default)
    for owner in cls.__mro__:
        if isinstance(owner, type) and issubclass(owner, BaseSettings) and name in owner.__annotations__:
            comment = _comments(owner).get(name, "")
            if comment:
                return comment
    return ""


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return (text or str(annotation)).replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")


def _default(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "*(dev placeholder: set it)*" if value.get_secret_value() else "*(empty)*"
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        return "*(unset)*"
    text = str(value).replace(str(Path.home()), "~")
    return f"`{text}`" if text else "*(empty)*"


def collect() -> list[Variable]:
    variables: dict[tuple[str, ...], Variable] = {}
    for service, classes in SERVICES.items():
        for cls in classes:
            for name, info in cls.model_fields.items():
                names = variable_names(cls, name, info)
                variable = variables.setdefault(
                    names, Variable(names, _type(info.annotation), _default(info), _describe(cls, name, info))
                )
                if variable.default != _default(info):
                    variable.default = "per service: " + ", ".join(
                        f"{s} {_default(c.model_fields[name])}"
                        for s, cs in SERVICES.items()
                        for c in cs
                        if name in c.model_fields and variable_names(c, name, c.model_fields[name]) == names
                    )
                if service not in variable.services:
                    variable.services.append(service)
    return sorted(variables.values(), key=lambda v: v.names)


def render() -> str:
    rows = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m hubpulse.config_docs > docs/configuration.md` (make config-docs) from the",
        "     services' pydantic settings classes; tests/deploy/test_manifests.py fails when it is stale. -->",
        "",
        "Every variable a hubpulse service reads. Where deploy files set them: `docker-compose.yml` (`x-hubpulse-env`",
        "and each service), `deploy/k8s/base/configmap.yaml` and each Deployment, `hubpulse up` "
        "(`src/hubpulse/platform/layout.py`).",
        "A default marked *dev placeholder* works only on the embedded platform: set a real value anywhere else.",
        "",
        "| variable | type | default | read by | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    everyone = set(SERVICES)
    for v in collect():
        names = " or ".join(f"`{n}`" for n in v.names)
        readers = "all" if set(v.services) == everyone else ", ".join(v.services)
        cells = [names, f"`{v.type}`", v.default, readers, v.description]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")
