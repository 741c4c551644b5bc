"""The monitoring files: generated ones match their generator; the rules pass promtool; the k8s wiring fits."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy.test_manifests import OVERLAYS, compose_services, of_kind, render
from typer.testing import CliRunner

from hubpulse.cli import app
from hubpulse.observability import generate
from hubpulse.observability.dashboards import DASHBOARDS
from hubpulse_common.errors import UserFacingError

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    # Debian's `prometheus` package provides it; .ci/run installs it when missing
    assert binary is not None, "promtool not found: apt-get install prometheus"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_committed_files_are_what_the_generator_writes() -> None:
    assert generate.stale(REPO) == [], "run `hubpulse observability generate` and commit the result"


def test_a_drifted_dashboard_fails_the_check(tmp_path: Path) -> None:
    for path in generate.artifacts(REPO):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "deploy", tmp_path / "deploy", dirs_exist_ok=True)
    board = tmp_path / generate.DASHBOARD_DIR / "hubpulse-api.json"
    model = json.loads(board.read_text())
    model["panels"][1]["targets"][0]["expr"] = "hand_edited_total"
    board.write_text(json.dumps(model))

    result = CliRunner().invoke(app, ["observability", "generate", "--check", "--root", str(tmp_path)])
    assert isinstance(result.exception, UserFacingError)
    assert "hubpulse-api.json" in str(result.exception)
    # generating repairs it, and only it
    result = CliRunner().invoke(app, ["observability", "generate", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert generate.stale(tmp_path) == []


def test_outside_the_repository_the_command_says_where_to_run_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["observability", "generate", "--check", "--root", str(tmp_path)])
    assert isinstance(result.exception, UserFacingError)
    assert "repository root" in str(result.exception)


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES_DIR / "hubpulse.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_promtool_unit_test_and_they_pass() -> None:
    rules = yaml.safe_load((RULES_DIR / "hubpulse.rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((RULES_DIR / "hubpulse.rules.test.yml").read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case.get("exp_alerts")}
    assert alerts - firing == set(), "alerts without a test where they fire"
    assert alerts - quiet == set(), "alerts without a test where they stay quiet"

    result = promtool("test", "rules", "hubpulse.rules.test.yml", cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheus_rule_carries_the_same_groups_and_passes_promtool(tmp_path: Path) -> None:
    (rule,) = [o for o in render("prod") if o["kind"] == "PrometheusRule"]
    plain = yaml.safe_load((RULES_DIR / "hubpulse.rules.yml").read_text())
    assert rule["spec"]["groups"] == plain["groups"]
    extracted = tmp_path / "from-prometheusrule.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = promtool("check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_monitor_scrapes_every_service_by_name(overlay: str) -> None:
    (monitor,) = of_kind("ServiceMonitor", overlay).values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    services = {name: svc for name, svc in of_kind("Service", overlay).items() if "selector" in svc["spec"]}
    scraped = {
        svc["metadata"]["labels"][monitor["spec"]["jobLabel"]]
        for svc in services.values()
        if selector.items() <= svc["metadata"]["labels"].items()
        and ports & {p.get("name") for p in svc["spec"]["ports"]}
    }
    # the job names the rules and dashboards select on
    rules = (RULES_DIR / "hubpulse.rules.yml").read_text()
    assert scraped == {"gateway", "auth", "ingestor", "features", "scorer", "deployer", "metrics"}
    assert 'job=~"gateway|auth|ingestor|features|scorer|deployer|metrics"' in rules


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dashboards_ship_as_configmaps_for_the_grafana_sidecar(overlay: str) -> None:
    maps = {name: cm for name, cm in of_kind("ConfigMap", overlay).items() if name.startswith("grafana-dashboard-")}
    assert {f"grafana-dashboard-{board.uid}" for board in DASHBOARDS} == set(maps)
    for config_map in maps.values():
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        (text,) = config_map["data"].values()
        assert json.loads(text)["uid"] in {board.uid for board in DASHBOARDS}
    (cluster,) = of_kind("Kafka", overlay).values()
    assert "kafkaExporter" in cluster["spec"]  # the PodMonitor's target, and the Stores dashboard's kafka_* series


def test_compose_runs_prometheus_and_grafana_on_these_files() -> None:
    config = REPO / "deploy" / "prometheus" / "prometheus.yml"
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    services = compose_services()
    for name, job in jobs.items():
        (target,) = job["static_configs"][0]["targets"]
        assert target.split(":")[0] in services, name  # a compose host name
    assert {"gateway", "auth", "ingestor", "features", "scorer", "deployer", "metrics"} <= set(jobs)
    assert {"postgres-exporter", "kafka-exporter", "mongodb-exporter"} <= set(services)
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/hubpulse.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
