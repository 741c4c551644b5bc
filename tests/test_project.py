"""What an integrator or contributor looks for first: one version everywhere, a licence, the metadata."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from hubpulse_common import __version__

ROOT = Path(__file__).resolve().parents[1]
PYPROJECTS = [
    ROOT / "pyproject.toml",
    ROOT / "libs" / "common" / "pyproject.toml",
    *sorted((ROOT / "services").glob("*/pyproject.toml")),
    ROOT / "clients" / "python" / "pyproject.toml",
]


def _project(path: Path) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads(path.read_text())["project"]
    return project


def test_every_package_has_one_version_licence_and_readme() -> None:
    assert len(PYPROJECTS) == 10
    for path in PYPROJECTS:
        project = _project(path)
        assert project["version"] == __version__, path
        assert project["license"] == "Apache-2.0", path
        readme = path.parent / str(project["readme"])
        assert readme.is_file(), readme
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_cli_and_changelog_name_the_version() -> None:
    out = subprocess.run([sys.executable, "-m", "hubpulse", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"hubpulse {__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{__version__}]" in changelog


def test_contributor_files_exist() -> None:
    for name in ("CONTRIBUTING.md", ".pre-commit-config.yaml", "examples/consumer.py"):
        assert (ROOT / name).is_file(), name


def test_images_and_manifests_carry_the_version() -> None:
    dockerfiles = sorted((ROOT / "services").glob("*/Dockerfile"))
    assert len(dockerfiles) == 7
    for dockerfile in dockerfiles:
        text = dockerfile.read_text()
        assert f"ARG VERSION={__version__}\n" in text, dockerfile
        assert 'org.opencontainers.image.version="${VERSION}"' in text, dockerfile
    kustomization = (ROOT / "deploy" / "k8s" / "base" / "kustomization.yaml").read_text()
    tags = [line.split(":", 1)[1].strip() for line in kustomization.splitlines() if "newTag:" in line]
    assert tags
    assert set(tags) == {__version__}
