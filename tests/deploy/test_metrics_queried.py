"""Every metric the alert rules and the dashboard query exists on a running service's ``/metrics``.

The queried names are read from the files the chart and compose ship (files/prometheus-rules.yaml and
files/grafana-dashboard.json) with a PromQL parser; the exposed names from a service started in-process on the
real broker and Postgres, over its HTTP app.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.outreach.app import build as build_outreach
from services.outreach.settings import OutreachSettings
from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.deploy.chart import CHART_DIR, ROOT

RULES = CHART_DIR / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART_DIR / "files" / "grafana-dashboard.json"
# Series Prometheus makes itself, not the services.
FROM_PROMETHEUS = {"up"}
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$namespace": ".*",
    "$release": ".*",
    "$service": ".*",
}


def _names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _grafana(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def queried_names() -> dict[str, set[str]]:
    """Metric name -> where it is queried (alert names, dashboard panel titles)."""
    out: dict[str, set[str]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for name in _names(rule["expr"]):
                out.setdefault(name, set()).add(f"alert {rule.get('alert') or rule.get('record')}")
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in _names(_grafana(target["expr"])):
                out.setdefault(name, set()).add(f"panel {panel['title']!r}")
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", query["query"])
            assert m, query
            for name in _names(_grafana(m.group(1))):
                out.setdefault(name, set()).add(f"variable {variable['name']}")
    return out


def exposed_names(text: str) -> set[str]:
    """Every sample name a /metrics page can carry: counters as name_total, histograms' _bucket/_sum/_count."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
    return names


def test_the_parser_finds_every_selector_and_nothing_else() -> None:
    expr = 'sum by (service) (rate(a_total{x="y"}[5m])) / on (service) group_left() max(b) > 0 unless c offset 1m'
    assert _names(expr) == {"a_total", "b", "c"}
    assert _names("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))") == {"h_bucket"}


async def test_every_metric_the_alerts_and_dashboard_query_exists_on_a_running_service(
    make_settings: SettingsFactory, start_service: Callable[[Service], Awaitable[Service]]
) -> None:
    queried = queried_names()
    assert len(queried) >= 10, queried
    service = await start_service(build_outreach(make_settings("outreach", OutreachSettings)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as client:
        assert (await client.get("/readyz")).status_code == 200  # sets leadstream_ready
        assert (await client.get("/v1/campaigns")).status_code == 401  # an API request: HTTP metrics have samples
    # /metrics is served by the internal listener's app (the chart's `metrics` port), not the API's.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.metrics_app), base_url="http://m") as m:
        page = await m.get("/metrics")
    assert page.status_code == 200
    exposed = exposed_names(page.text)
    assert "leadstream_ready" in exposed and "leadstream_events_handled_total" in exposed
    missing = {name: sorted(where) for name, where in queried.items() if name not in exposed | FROM_PROMETHEUS}
    assert not missing, f"queried but not on /metrics: {missing}"


async def test_a_service_exports_its_build_info_from_its_start(make_settings: SettingsFactory) -> None:
    """leadstream_build_info, which the dashboard lists namespaces, releases and services from, is on /metrics as
    soon as a service is built: before it connects to Postgres or Kafka and before any probe (leadstream_ready is
    not there yet), event or request. Its version is the installed package's."""
    service = build_outreach(make_settings("buildprobe", OutreachSettings))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.metrics_app), base_url="http://m") as m:
            page = await m.get("/metrics")
    finally:
        await service.engine.dispose()
        await service.read_engine.dispose()
    assert page.status_code == 200
    mine = {
        sample.name: sample
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
        if sample.labels.get("service") == "buildprobe"
    }
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    info = mine["leadstream_build_info"]
    assert info.labels == {"service": "buildprobe", "version": version} and info.value == 1
    assert "leadstream_ready" not in mine
