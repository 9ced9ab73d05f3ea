"""The Grafana dashboard (files/grafana-dashboard.json) shows one release: every panel query selects the `namespace`
and `release` variables, which the chart defaults to its own release (always among their options, also before its
first scrape) and which default to All (`.*`) in the file compose provisions as it is, where the series carry neither
label. The panels and the variables' options are evaluated by Prometheus' own engine (promtool) with the variables
filled in as Grafana fills them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.deploy.chart import CHART_DIR, Chart, load_yaml_docs, of_kind, values_file

pytestmark = pytest.mark.timeout(1800)  # the chart fixture may wait for the tools' first build

DASHBOARD_FILE = CHART_DIR / "files" / "grafana-dashboard.json"
SCOPED = ("namespace", "release")
# Grafana's built-in interval and range variables, as a query sent at a 1m step over the last hour would get them.
BUILTINS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


def _file() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every panel query."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def interpolate(dashboard: dict[str, Any], expr: str) -> str:
    """``expr`` with the dashboard's variables at their defaults, as Grafana's Prometheus data source fills a query:
    "All" becomes the variable's allValue, a value of a variable with All (or multi-select) is regex-escaped."""
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    for name, variable in _variables(dashboard).items():
        if variable["type"] != "query":
            continue
        current = (variable.get("current") or {}).get("value", "$__all")
        if current == "$__all":
            value = variable["allValue"]
        elif variable.get("includeAll") or variable.get("multi"):
            value = _REGEX_SPECIAL.sub(r"\\\1", current)
        else:
            value = current
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr, expr
    return expr


def _selectors(expr: str) -> list[Any]:
    """Every vector selector of a PromQL expression (Grafana's interval variables filled in)."""
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_every_panel_query_selects_the_namespace_and_release_variables() -> None:
    dashboard = _file()
    targets = _targets(dashboard)
    assert len(targets) >= 12
    for title, expr in targets:
        selectors = [s for s in _selectors(expr) if s.name.startswith("leadstream_") or s.name == "up"]
        assert selectors, (title, expr)
        for selector in selectors:
            matchers = {(m.name, str(m.op), m.value) for m in selector.matchers.matchers}
            for label in SCOPED:
                # A regex matcher: `.*` (All) also matches a series without the label (compose's).
                assert (label, "MatchOp.Re", f"${label}") in matchers, (title, selector.name, label)


def test_the_namespace_and_release_variables_pick_one_release_and_default_to_all_in_the_file() -> None:
    variables = _variables(_file())
    assert list(variables) == ["datasource", "namespace", "release", "service"]
    for name in SCOPED:
        variable = variables[name]
        assert variable["type"] == "query" and variable["multi"] is False, name
        # All is `.*`, the file's default: compose's series have neither label, and `=~".*"` matches a missing one.
        assert variable["includeAll"] is True and variable["allValue"] == ".*", name
        assert variable["current"]["value"] == "$__all", name
        assert variable["refresh"] in (1, 2), name  # the options follow the series, not the file
        query = variable["query"]["query"]
        assert query == variable["definition"], name
        matched = re.fullmatch(r"label_values\((leadstream_\w+)(\{[^}]*\})?, (\w+)\)", query)
        assert matched and matched.group(3) == name, query
    # The releases offered are those of the chosen namespace; the services those of the chosen release. All three
    # come from leadstream_build_info, which a service exports from its start (test_metrics_queried.py).
    queries = {name: variables[name]["query"]["query"] for name in ("namespace", "release", "service")}
    assert queries == {
        "namespace": "label_values(leadstream_build_info, namespace)",
        "release": 'label_values(leadstream_build_info{namespace=~"$namespace"}, release)',
        "service": 'label_values(leadstream_build_info{namespace=~"$namespace", release=~"$release"}, service)',
    }


def _rendered_dashboard(chart: Chart, release: str, namespace: str = "leadstream") -> dict[str, Any]:
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    result = chart.helm("-f", str(values_file("production")), "--namespace", namespace, release=release)
    assert result.returncode == 0, result.stderr
    configmaps = of_kind(load_yaml_docs(result.stdout), "ConfigMap")
    (cm,) = [d for d in configmaps if d["metadata"]["name"].endswith("-dashboard")]
    loaded: dict[str, Any] = json.loads(cm["data"]["leadstream.json"])
    return loaded


def test_the_charts_dashboard_defaults_to_its_own_release(chart: Chart) -> None:
    uids = set()
    for release in ("acme", "beta"):
        dashboard = _rendered_dashboard(chart, release)
        variables = _variables(dashboard)
        assert variables["namespace"]["current"]["value"] == "leadstream"
        assert variables["release"]["current"]["value"] == release
        assert variables["service"]["current"] == {}  # the file's: All
        # One Grafana loads both releases' dashboards: each its own uid (Grafana's limit: 40) and a title saying whose
        assert len(dashboard["uid"]) <= 40 and f"leadstream/{release}" in dashboard["title"]
        uids.add(dashboard["uid"])
    assert len(uids) == 2


def _options_query(dashboard: dict[str, Any], variable: str) -> str:
    """The PromQL whose series' label values are a query variable's options, with the other variables at their
    defaults: for ``label_values(selector, label)`` the label's values on the selector's series; for the chart's
    ``query_result(expr)`` the values its regex (``/label="([^"]+)"/``) takes from each of expr's series, as Grafana
    writes one (``{label="value"} 1 <ms>``) and keeps each value once."""
    spec = _variables(dashboard)[variable]
    query = spec["query"]["query"]
    listed = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    if listed:
        selector, label = listed.groups()
        return f"group by ({label}) ({interpolate(dashboard, selector)})"
    result = re.fullmatch(r"query_result\((.+)\)", query)
    taken = re.fullmatch(r'/(\w+)="\(\[\^"\]\+\)"/', spec.get("regex") or "")
    assert result and taken, (variable, query, spec.get("regex"))
    label = taken.group(1)
    # Grafana's text of a series of the result, and what the variable's regex (a JavaScript one, here Python's
    # equal) keeps of it.
    grafana_text = f'{{{label}="fresh-1"}} 1 300000'
    kept = re.search(spec["regex"][1:-1], grafana_text)
    assert kept and kept[1] == "fresh-1", spec["regex"]
    return f"group by ({label}) ({interpolate(dashboard, result.group(1))})"


def test_a_freshly_installed_release_is_among_the_options_and_is_the_default(chart: Chart, tmp_path: Path) -> None:
    """A release whose pods were scraped but have had no probe, event or request yet has only the series a service
    exports from its start (leadstream_build_info; Prometheus' `up`): its dashboard offers it, and its services, and
    defaults to it, so Grafana has no reason to fall back to another choice (All, which adds every release up).
    Evaluated by promtool next to an older release in the same namespace and another in another namespace."""
    if chart.tools.promtool is None:
        pytest.fail(f"promtool is needed ({chart.tools.reason or 'not built'})")

    def pod(namespace: str, release: str, service: str, *, served: bool) -> list[dict[str, str]]:
        target = f'namespace="{namespace}", release="{release}", instance="{release}-{service}.{namespace}:9090"'
        started = [
            {"series": f'up{{{target}, job="{service}", service="{release}-leadstream-{service}"}}', "values": "1x10"},
            {"series": f'leadstream_build_info{{{target}, service="{service}", version="0.1.0"}}', "values": "1x10"},
        ]
        if not served:
            return started
        return [*started, {"series": f'leadstream_ready{{{target}, service="{service}"}}', "values": "1x10"}]

    series = [
        *pod("leadstream", "acme", "outreach", served=True),
        *pod("staging", "other", "outreach", served=True),
        *pod("leadstream", "fresh", "outreach", served=False),
        *pod("leadstream", "fresh", "projection", served=False),
    ]
    fresh = _rendered_dashboard(chart, "fresh")
    variables = _variables(fresh)
    assert variables["namespace"]["current"]["value"] == "leadstream"
    assert variables["release"]["current"]["value"] == "fresh"

    def options(label: str, *values: str) -> list[dict[str, Any]]:
        return [{"labels": f'{{{label}="{value}"}}', "value": 1} for value in values]

    checks = [
        {
            "expr": _options_query(fresh, "namespace"),
            "eval_time": "5m",
            "exp_samples": options("namespace", "leadstream", "staging"),
        },
        # The namespace's releases, the fresh one (the default) among them; not the other namespace's.
        {
            "expr": _options_query(fresh, "release"),
            "eval_time": "5m",
            "exp_samples": options("release", "acme", "fresh"),
        },
        {
            "expr": _options_query(fresh, "service"),
            "eval_time": "5m",
            "exp_samples": options("service", "outreach", "projection"),
        },
    ]
    unit = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }
    path = tmp_path / "fresh-release-test.yaml"
    path.write_text(yaml.safe_dump(unit))
    result = subprocess.run(
        [str(chart.tools.promtool), "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_release_never_scraped_is_offered_and_is_the_default(chart: Chart, tmp_path: Path) -> None:
    """Before any of a release's pods has been scraped (none scheduled yet, none answering /metrics) Prometheus has
    no series of it, yet its dashboard offers it (and, in a namespace never scraped either, that namespace) next to
    the releases that have series, and defaults to it: Grafana keeps a default that is among the options, and only
    falls back to another when it is not. Evaluated by promtool, in a namespace with another release and in a new
    one."""
    if chart.tools.promtool is None:
        pytest.fail(f"promtool is needed ({chart.tools.reason or 'not built'})")

    def build_info(namespace: str, release: str) -> dict[str, str]:
        target = f'namespace="{namespace}", release="{release}", instance="{release}-outreach.{namespace}:9090"'
        return {"series": f'leadstream_build_info{{{target}, service="outreach", version="0.1.0"}}', "values": "1x10"}

    def options(label: str, *values: str) -> list[dict[str, Any]]:
        return [{"labels": f'{{{label}="{value}"}}', "value": 1} for value in values]

    series = [build_info("leadstream", "acme"), build_info("staging", "other")]
    beside, alone = _rendered_dashboard(chart, "fresh"), _rendered_dashboard(chart, "fresh", namespace="brand-new")
    for dashboard, namespace in ((beside, "leadstream"), (alone, "brand-new")):
        variables = _variables(dashboard)
        assert variables["namespace"]["current"]["value"] == namespace
        assert variables["release"]["current"]["value"] == "fresh"
        # Still a list of what Prometheus has (refreshed with the time range), with All: other releases stay a pick.
        for name in SCOPED:
            assert variables[name]["type"] == "query" and variables[name]["refresh"] == 2, name
            assert variables[name]["includeAll"] is True and variables[name]["allValue"] == ".*", name
    checks = [
        # Beside acme in its namespace: both releases offered, the fresh one too; every namespace with a series.
        {
            "expr": _options_query(beside, "namespace"),
            "eval_time": "5m",
            "exp_samples": options("namespace", "leadstream", "staging"),
        },
        {
            "expr": _options_query(beside, "release"),
            "eval_time": "5m",
            "exp_samples": options("release", "acme", "fresh"),
        },
        # Alone in a namespace no pod was scraped in: that namespace is offered too, and the release.
        {
            "expr": _options_query(alone, "namespace"),
            "eval_time": "5m",
            "exp_samples": options("namespace", "brand-new", "leadstream", "staging"),
        },
        {"expr": _options_query(alone, "release"), "eval_time": "5m", "exp_samples": options("release", "fresh")},
    ]
    unit = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }
    path = tmp_path / "never-scraped-test.yaml"
    path.write_text(yaml.safe_dump(unit))
    result = subprocess.run(
        [str(chart.tools.promtool), "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _panel(dashboard: dict[str, Any], title: str) -> str:
    (expr,) = [expr for t, expr in _targets(dashboard) if t == title]
    return interpolate(dashboard, expr)


def test_each_releases_dashboard_shows_its_own_series_and_compose_shows_every_one(chart: Chart, tmp_path: Path) -> None:
    """Evaluated by promtool: two releases in one namespace (and one of their names in another namespace) each see
    their own readiness and lag, never the sum or the minimum of both; compose's series, without either label, are
    what the file's defaults show."""
    if chart.tools.promtool is None:
        pytest.fail(f"promtool is needed ({chart.tools.reason or 'not built'})")
    ready, lag = "Readiness (1 ready, 0 not)", "Consumer lag (records)"

    def series(metric: str, namespace: str, release: str, service: str, values: str, extra: str = "") -> dict[str, str]:
        """One series as the chart's ServiceMonitor scrapes it: the target's namespace and release."""
        target = f'namespace="{namespace}", release="{release}", service="{service}", instance="{release}.{namespace}"'
        return {"series": f"{metric}{{{target}{extra}}}", "values": values}

    topic = ', topic="t"'
    chart_series = [
        series("leadstream_ready", "leadstream", "acme", "outreach", "0x10"),
        series("leadstream_ready", "leadstream", "beta", "outreach", "1x10"),
        series("leadstream_ready", "staging", "acme", "outreach", "1x10"),
        series("leadstream_consumer_lag", "leadstream", "acme", "projection", "100x10", topic),
        series("leadstream_consumer_lag", "leadstream", "beta", "projection", "50x10", topic),
        series("leadstream_consumer_lag", "staging", "acme", "projection", "7x10", topic),
    ]
    compose_series = [
        {"series": 'leadstream_ready{service="outreach", job="outreach", instance="outreach:9464"}', "values": "1x10"},
        {
            "series": 'leadstream_consumer_lag{service="projection", job="projection", instance="projection:9464", '
            'topic="t"}',
            "values": "30x10",
        },
    ]

    def checks(dashboard: dict[str, Any], outreach_ready: int, projection_lag: int) -> list[dict[str, Any]]:
        return [
            {
                "expr": _panel(dashboard, ready),
                "eval_time": "5m",
                "exp_samples": [{"labels": '{service="outreach"}', "value": outreach_ready}],
            },
            {
                "expr": _panel(dashboard, lag),
                "eval_time": "5m",
                "exp_samples": [{"labels": '{service="projection", topic="t"}', "value": projection_lag}],
            },
        ]

    acme, beta = _rendered_dashboard(chart, "acme"), _rendered_dashboard(chart, "beta")
    unit = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": chart_series, "promql_expr_test": checks(acme, 0, 100)},
            {"interval": "1m", "input_series": chart_series, "promql_expr_test": checks(beta, 1, 50)},
            {"interval": "1m", "input_series": compose_series, "promql_expr_test": checks(_file(), 1, 30)},
        ],
    }
    path = tmp_path / "dashboard-test.yaml"
    path.write_text(yaml.safe_dump(unit))
    result = subprocess.run(
        [str(chart.tools.promtool), "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
