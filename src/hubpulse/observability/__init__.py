"""What the people who run hubpulse look at: Grafana dashboards and Prometheus rules, generated from code.

`dashboards.py` declares the panels (PromQL over the metric names the services register) and builds them with
grafana-foundation-sdk; `generate.py` writes the dashboard JSON, the Kubernetes ConfigMaps and the
PrometheusRule (from the plain rules file, the single source of the alerts) under deploy/.
`hubpulse observability generate` runs it; `--check` fails when a committed file differs.
"""
