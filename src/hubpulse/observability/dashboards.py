"""The Grafana dashboards: each panel's PromQL, declared once here and built with grafana-foundation-sdk.

Queries use only metric names the services register (hubpulse_*) or the usual exporters export
(postgres_exporter `pg_*`, kafka_exporter `kafka_*`, as Strimzi's kafkaExporter too, percona mongodb_exporter
`mongodb_*`). Ratios whose numerator may have no series yet (no 5xx so far) fall back to `denominator * 0`, so
they read 0, not "no data", while a renamed metric still empties the panel (tests/observability checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# Grafana picks the Prometheus data source from this variable (kube-prometheus-stack's, or compose's).
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# the hubpulse API, without the probes and the scrape endpoint
API = 'route!~"/healthz|/readyz|/metrics"'
PREDICT_ROUTE = 'route="/v1/deployments/{deployment_id}/predict"'
COMPLETED = 'status=~"completed|completed_with_errors"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Literal["timeseries", "stat"] = "timeseries"
    description: str = ""
    width: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("hubpulse",))

    @property
    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]


def _series(title: str, *queries: Query, unit: str = "short", description: str = "", width: int = 8) -> Panel:
    """A time-series panel: each query's range over the dashboard's time window."""
    return Panel(title, queries, unit=unit, description=description, width=width)


def _stat(title: str, *queries: Query, unit: str = "short", description: str = "", width: int = 8) -> Panel:
    """A stat panel: each query's latest value."""
    return Panel(title, queries, unit=unit, kind="stat", description=description, width=width)


def _legend(by: str) -> str:
    """The legend naming each series by its `by` labels: `{{topic}} {{group}}`."""
    return " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))


def _rate(metric: str, by: str, window: str = "5m", legend: str = "") -> Query:
    """The per-second rate of a counter, summed per `by`."""
    return Query(f"sum by ({by}) (rate({metric}[{window}]))", legend or _legend(by))


def _increase(metric: str, by: str, window: str = "1h", legend: str = "") -> Query:
    """How much a counter grew over `window`, summed per `by`."""
    return Query(f"sum by ({by}) (increase({metric}[{window}]))", legend or _legend(by))


def _quantiles(metric: str, by: str, selector: str = "", window: str = "5m") -> tuple[Query, ...]:
    """p50, p95 and p99 of a histogram, per `by`."""
    legend = _legend(by)
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{window}])))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    )


def _ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, reading 0 while the numerator has no series."""
    return f"({numerator} or {denominator} * 0) / {denominator}"


PIPELINE = Dashboard(
    uid="hubpulse-pipeline",
    title="hubpulse / Pipeline",
    description="Hub ingestion, the Kafka event flow, day closes, scores and the trend model in use.",
    rows=(
        Row(
            "Last ingest cycle",
            (
                _stat(
                    "Since the last completed cycle",
                    Query(f"time() - max(hubpulse_ingest_last_cycle_timestamp_seconds{{{COMPLETED}}})", "age"),
                    unit="s",
                    description="HubpulseIngestStale fires past 26 h.",
                    width=6,
                ),
                _stat(
                    "Duration of the last cycle",
                    Query("max(hubpulse_ingest_last_cycle_seconds)", "duration"),
                    unit="s",
                    width=6,
                ),
                _stat(
                    "Models in the last cycle",
                    Query("max by (outcome) (hubpulse_ingest_last_cycle_models)", "{{outcome}}"),
                    description="listed: on the Hub pages fetched; stored: written and published.",
                    width=6,
                ),
                _stat(
                    "Pages in the last cycle",
                    Query("max by (outcome) (hubpulse_ingest_last_cycle_pages)", "{{outcome}}"),
                    description="skipped: pages that failed after retries (their models are missing that day).",
                    width=6,
                ),
                _series("Cycles finished (24 h)", _increase("hubpulse_ingest_cycles_total", "status", "1d")),
                _series("Models ingested", _rate("hubpulse_ingest_models_total", "source"), unit="ops"),
                _series("Hub pages fetched", _rate("hubpulse_ingest_pages_total", "outcome"), unit="ops"),
            ),
        ),
        Row(
            "Events",
            (
                _series("Published per topic", _rate("hubpulse_kafka_published_total", "topic"), unit="ops"),
                _series(
                    "Processed per topic and group", _rate("hubpulse_kafka_consumed_total", "topic, group"), unit="ops"
                ),
                _series(
                    "Handler failures per topic",
                    _rate("hubpulse_kafka_failed_total", "topic, group"),
                    unit="ops",
                    description="Attempts that raised; retried, then the poison is isolated and dead-lettered.",
                ),
                _series(
                    "Dead-lettered per topic (1 h)",
                    _increase("hubpulse_kafka_dead_lettered_total", "topic, group", legend="{{topic}}.dlq {{group}}"),
                    description="Read them with `hubpulse` DLQ tooling; x-error headers say why.",
                ),
                _series(
                    "Consumer lag per group and partition",
                    Query(
                        "max by (topic, group, partition) (hubpulse_kafka_consumer_partition_lag)",
                        "{{group}} {{topic}}[{{partition}}]",
                    ),
                    description="Reported by the pod that owns the partition (kafka_exporter's view: Stores).",
                ),
                _series("Batch handling time", *_quantiles("hubpulse_kafka_batch_seconds", "topic, group"), unit="s"),
            ),
        ),
        Row(
            "Features, scores and the trend model",
            (
                _series(
                    "Day-close duration",
                    *_quantiles("hubpulse_features_day_close_seconds", "job", window="1d"),
                    unit="s",
                ),
                _stat("Days closed (24 h)", Query("sum(increase(hubpulse_features_days_closed_total[1d]))", "days")),
                _series("Feature rows", _rate("hubpulse_features_rows_total", "kind"), unit="ops"),
                _series("Scores written per day", _increase("hubpulse_scorer_scored_total", "model_version", "1d")),
                _stat(
                    "Model version in use",
                    Query("count by (version) (hubpulse_scorer_model_info)", "{{version}}"),
                    description="Scorer pods serving each version (two versions: a promotion is rolling out).",
                ),
                _series(
                    "Model age and retraining period",
                    Query("time() - max(hubpulse_scorer_model_created_timestamp_seconds)", "age"),
                    Query("max(hubpulse_scorer_model_retrain_period_seconds)", "retraining period"),
                    unit="s",
                ),
            ),
        ),
    ),
)

API_DASHBOARD = Dashboard(
    uid="hubpulse-api",
    title="hubpulse / API",
    description="Rate, errors and duration per route of every service; the gateway's cache, limits and breakers.",
    rows=(
        Row(
            "Objectives (docs/observability.md)",
            (
                _stat(
                    "Gateway availability (1 h)",
                    Query("1 - hubpulse:gateway_error_ratio:rate1h", "available"),
                    unit="percentunit",
                    description="Objective: 99.9 % of API requests without a 5xx over 30 days.",
                    width=12,
                ),
                _stat(
                    "Search requests under 250 ms (1 h)",
                    Query("1 - hubpulse:search_slow_ratio:rate1h", "fast"),
                    unit="percentunit",
                    description="Objective: 99 % of GET /v1/models under 250 ms over 30 days.",
                    width=12,
                ),
            ),
        ),
        Row(
            "Requests",
            (
                _series(
                    "Rate per route",
                    Query(
                        f"sum by (service, route) (rate(hubpulse_http_requests_total{{{API}}}[5m]))",
                        "{{service}} {{route}}",
                    ),
                    unit="reqps",
                    width=12,
                ),
                _series(
                    "Errors per route (4xx and 5xx)",
                    Query(
                        "sum by (service, route, status)"
                        f' (rate(hubpulse_http_requests_total{{{API},status=~"[45].."}}[5m]))',
                        "{{service}} {{route}} {{status}}",
                    ),
                    unit="reqps",
                    width=12,
                ),
                _series(
                    "5xx ratio per service",
                    Query(
                        _ratio(
                            f'sum by (service) (rate(hubpulse_http_requests_total{{{API},status=~"5.."}}[5m]))',
                            f"sum by (service) (rate(hubpulse_http_requests_total{{{API}}}[5m]))",
                        ),
                        "{{service}}",
                    ),
                    unit="percentunit",
                ),
                _series(
                    "Rate-limited requests",
                    Query(
                        'sum by (service, route) (rate(hubpulse_http_requests_total{status="429"}[5m]))',
                        "{{service}} {{route}}",
                    ),
                    unit="reqps",
                    description="429s: the gateway's per-key limit (route `unmatched`) and auth's login limits.",
                ),
                _series(
                    "Duration per route",
                    *_quantiles("hubpulse_http_request_duration_seconds", "service, route", API),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Gateway",
            (
                _series(
                    "Search cache hit ratio",
                    Query(
                        _ratio(
                            'sum(rate(hubpulse_gateway_search_cache_total{result="hit"}[5m]))',
                            "sum(rate(hubpulse_gateway_search_cache_total[5m]))",
                        ),
                        "hits",
                    ),
                    unit="percentunit",
                ),
                _series(
                    "Upstream circuit breakers",
                    Query(
                        "max by (upstream, state) (hubpulse_gateway_upstream_circuit_state)", "{{upstream}} {{state}}"
                    ),
                    description="1 for the state each upstream's breaker is in (opened: calls fail at once, 503).",
                ),
                _series(
                    "WebSocket connections",
                    Query("sum by (service, route) (hubpulse_websocket_connections)", "{{service}} {{route}}"),
                ),
            ),
        ),
        Row(
            "Services",
            (
                _series(
                    "Readiness checks",
                    Query("min by (service, check) (hubpulse_readiness_check)", "{{service}} {{check}}"),
                    description="1: the /readyz check passes (evaluated at each scrape).",
                    width=12,
                ),
                _series(
                    "Scrape targets up",
                    Query('up{job=~"gateway|auth|ingestor|features|scorer|deployer|metrics"}', "{{job}} {{instance}}"),
                    width=12,
                ),
            ),
        ),
    ),
)

DEPLOYMENTS = Dashboard(
    uid="hubpulse-deployments",
    title="hubpulse / Deployments and inference",
    description="Predict calls per deployment, model servers, deployment states and alerts.",
    rows=(
        Row(
            "Inference per deployment",
            (
                _series(
                    "Predict latency per deployment",
                    *_quantiles("hubpulse_inference_latency_seconds", "deployment_id"),
                    unit="s",
                    description="As the gateway measured it, from inference.events.v1 (metrics service).",
                ),
                _series(
                    "Predict error ratio per deployment",
                    Query(
                        _ratio(
                            'sum by (deployment_id) (rate(hubpulse_inference_requests_total{status="error"}[5m]))',
                            "sum by (deployment_id) (rate(hubpulse_inference_requests_total[5m]))",
                        ),
                        "{{deployment_id}}",
                    ),
                    unit="percentunit",
                ),
                _series(
                    "Throughput per deployment",
                    _rate("hubpulse_inference_requests_total", "deployment_id", legend="calls {{deployment_id}}"),
                    _rate("hubpulse_inference_inputs_total", "deployment_id", legend="inputs {{deployment_id}}"),
                    unit="ops",
                ),
                _series(
                    "Predict route at the gateway",
                    *_quantiles("hubpulse_http_request_duration_seconds", "service", PREDICT_ROUTE),
                    Query(
                        f"sum by (status) (rate(hubpulse_http_requests_total{{{PREDICT_ROUTE}}}[5m]))", "{{status}} /s"
                    ),
                    unit="s",
                    description="All deployments together, including calls refused before the model server.",
                ),
            ),
        ),
        Row(
            "Model servers",
            (
                _series(
                    "Model server CPU",
                    Query(
                        "max by (target, deployment_id) (hubpulse_model_server_cpu_percent)",
                        "{{deployment_id}} ({{target}})",
                    ),
                    unit="percent",
                    description="Processes the deployer runs itself (local target); Kubernetes ones: cAdvisor.",
                    width=12,
                ),
                _series(
                    "Model server memory",
                    Query(
                        "max by (target, deployment_id) (hubpulse_model_server_memory_rss_bytes)",
                        "{{deployment_id}} ({{target}})",
                    ),
                    unit="bytes",
                    width=12,
                ),
            ),
        ),
        Row(
            "Deployments and alerts",
            (
                _series(
                    "Deployments by state",
                    Query("max by (target, status) (hubpulse_deployer_deployments)", "{{status}} ({{target}})"),
                ),
                _series(
                    "State transitions (1 h)",
                    _increase("hubpulse_deployer_transitions_total", "status", legend="to {{status}}"),
                ),
                _series(
                    "Deployment alerts firing",
                    Query("max by (rule) (hubpulse_metrics_alerts_firing)", "{{rule}}"),
                    _increase(
                        "hubpulse_metrics_alert_transitions_total", "rule, state", legend="{{rule}} {{state}} (1 h)"
                    ),
                    description="Rules of HUBPULSE_ALERT_RULES, evaluated by the metrics service.",
                ),
                _series(
                    "Platform alerts",
                    Query('count by (alertname, alertstate) (ALERTS{alertname=~"Hubpulse.*"})', "{{alertname}}"),
                    description="Prometheus rules of deploy/prometheus/rules (pending or firing).",
                ),
                _series(
                    "Inference events stored",
                    _rate("hubpulse_metrics_events_stored_total", "topic"),
                    Query(
                        "histogram_quantile(0.95, sum by (le) (rate(hubpulse_metrics_ingest_lag_seconds_bucket[5m])))",
                        "p95 delay (s)",
                    ),
                ),
            ),
        ),
    ),
)

STORES = Dashboard(
    uid="hubpulse-stores",
    title="hubpulse / Stores",
    description="PostgreSQL (postgres_exporter), Kafka (kafka_exporter / Strimzi kafkaExporter), MongoDB "
    "(percona mongodb_exporter).",
    rows=(
        Row(
            "PostgreSQL",
            (
                _stat("Up", Query("min(pg_up)", "up"), width=4),
                _series(
                    "Connections",
                    Query("sum by (datname) (pg_stat_database_numbackends)", "{{datname}}"),
                    Query("max(pg_settings_max_connections)", "max_connections"),
                    width=10,
                ),
                _series(
                    "Transactions",
                    _rate("pg_stat_database_xact_commit", "datname", legend="commit {{datname}}"),
                    _rate("pg_stat_database_xact_rollback", "datname", legend="rollback {{datname}}"),
                    unit="ops",
                    width=10,
                ),
                _series(
                    "Buffer cache hit ratio",
                    Query(
                        "sum(rate(pg_stat_database_blks_hit[5m])) / (sum(rate(pg_stat_database_blks_hit[5m]))"
                        " + sum(rate(pg_stat_database_blks_read[5m])))",
                        "hit ratio",
                    ),
                    unit="percentunit",
                ),
                _series(
                    "Database size", Query("max by (datname) (pg_database_size_bytes)", "{{datname}}"), unit="bytes"
                ),
                _series(
                    "Deadlocks and conflicts (1 h)",
                    _increase("pg_stat_database_deadlocks", "datname", legend="deadlocks {{datname}}"),
                    _increase("pg_stat_database_conflicts", "datname", legend="conflicts {{datname}}"),
                ),
            ),
        ),
        Row(
            "Kafka",
            (
                _stat("Brokers", Query("max(kafka_brokers)", "brokers"), width=4),
                _series(
                    "Consumer group lag (broker view)",
                    Query(
                        'sum by (consumergroup, topic) (kafka_consumergroup_lag{topic!~".*\\\\.dlq"})',
                        "{{consumergroup}} {{topic}}",
                    ),
                    description="Committed offsets against the log end, per group: survives consumer crashes.",
                    width=10,
                ),
                _series(
                    "Messages in per topic",
                    _rate("kafka_topic_partition_current_offset", "topic"),
                    unit="ops",
                    width=10,
                ),
                _series(
                    "Dead-letter topic depth",
                    Query(
                        'sum by (topic) (kafka_topic_partition_current_offset{topic=~".*\\\\.dlq"}'
                        ' - kafka_topic_partition_oldest_offset{topic=~".*\\\\.dlq"})',
                        "{{topic}}",
                    ),
                ),
                _series(
                    "Under-replicated partitions",
                    Query("sum by (topic) (kafka_topic_partition_under_replicated_partition)", "{{topic}}"),
                ),
            ),
        ),
        Row(
            "MongoDB",
            (
                _stat("Up", Query("min(mongodb_up)", "up"), width=4),
                _series("Connections", Query('sum(mongodb_ss_connections{conn_type="current"})', "current"), width=10),
                _series("Operations", _rate("mongodb_ss_opcounters", "legacy_op_type"), unit="ops", width=10),
                _series(
                    "Resident memory", Query("max(mongodb_ss_mem_resident) * 1024 * 1024", "resident"), unit="bytes"
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (PIPELINE, API_DASHBOARD, DEPLOYMENTS, STORES)


def _panel(spec: Panel, panel_id: int) -> stat.Panel | timeseries.Panel:
    built: stat.Panel | timeseries.Panel
    if spec.kind == "stat":  # the latest value of each series
        reduce = common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
        built = stat.Panel().reduce_options(reduce).color_mode(BigValueColorMode.VALUE)
    else:
        legend = common.VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM)
        tooltip = common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        built = timeseries.Panel().legend(legend.show_legend(True)).tooltip(tooltip)
    built = built.id(panel_id).title(spec.title).datasource(DATASOURCE).unit(spec.unit).span(spec.width).height(8)
    if spec.description:
        built = built.description(spec.description)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
        built = built.with_target(target.instant() if spec.kind == "stat" else target.range())
    return built


def build(spec: Dashboard) -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana's provisioning and its sidecar load)."""
    board = (
        dashboard.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )
    panel_id = 0
    for row in spec.rows:
        panel_id += 1
        board = board.with_row(dashboard.Row(row.title).id(panel_id))
        for panel in row.panels:
            panel_id += 1
            board = board.with_panel(_panel(panel, panel_id))
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model


def render(spec: Dashboard) -> str:
    return json.dumps(build(spec), indent=2, sort_keys=True) + "\n"
