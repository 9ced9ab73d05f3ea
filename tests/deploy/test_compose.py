"""deploy/compose/docker-compose.yml: valid Compose, and wired the way the services expect.

No Docker engine runs here, so the file is checked structurally: against the Compose Specification's JSON
Schema (vendored in tests/deploy/schemas, from github.com/compose-spec/compose-spec, Apache-2.0) after the
same `${VAR:-default}` interpolation Compose does, and against the code (service names, ports, settings).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from leadstream_cli.main import SERVICES
from leadstream_cli.processes import DEFAULT_PORTS
from tests.deploy.chart import Chart

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
OBSERVABILITY = {"otel-collector", "jaeger", "prometheus", "grafana"}
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``; ``$$`` is a literal ``$``."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1)) or m.group(2) or ""

    return _VAR.sub(sub, text)


def load(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as Compose sees it (interpolated, anchors and merge keys resolved)."""
    doc: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text(), env))
    return doc


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)] == []
    # The schema is strict enough to catch a misspelt key.
    broken = load()
    broken["services"]["kafka"]["healthcheck"]["intervall"] = "5s"
    assert any("intervall" in e.message for e in validator.iter_errors(broken))


def test_kafka_is_a_single_kraft_node_the_services_can_reach(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    (voter,) = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voter.split("@")[0] == node_id
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert voter.split("@")[1].endswith(listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]])
    assert set(listeners) <= set(protocols) and set(advertised) <= set(listeners)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    # What the services are told is what the broker advertises on the compose network.
    bootstrap = compose["x-leadstream-env"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap in advertised.values()
    # Topics are created by `leadstream topics apply` with the contract's retention, never implicitly.
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert f"kafka-data:{env['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    _, host_port, container_port = kafka["ports"][0].split(":")
    assert listeners["HOST"] == f":{container_port}" and advertised["HOST"] == f"localhost:{host_port}"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_postgres_matches_the_services_database_url(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert pg["image"] == "postgres:16"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    url = make_url(compose["x-leadstream-env"]["DATABASE_URL"])
    assert url.drivername == "postgresql+asyncpg" and url.host == "postgres" and url.port == 5432
    assert (url.username, url.password, url.database) == (
        pg["environment"]["POSTGRES_USER"],
        pg["environment"]["POSTGRES_PASSWORD"],
        pg["environment"]["POSTGRES_DB"],
    )
    # The password is interpolated, so a real one comes from the environment or .env, not from the file.
    custom = load({"POSTGRES_PASSWORD": "s3cret"})
    assert make_url(custom["x-leadstream-env"]["DATABASE_URL"]).password == "s3cret"
    assert custom["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"


def test_init_creates_topics_and_migrates_once_both_servers_are_healthy(compose: dict[str, Any]) -> None:
    init = compose["services"]["init"]
    script = " ".join(init["entrypoint"] + init["command"])
    assert "leadstream topics apply" in script and "leadstream migrate" in script
    assert script.index("topics apply") < script.index("migrate") and "&&" in script
    assert init["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert init["restart"] == "no"
    assert init["build"] == {"context": "../..", "dockerfile": "Dockerfile"}
    assert (COMPOSE.parent / init["build"]["context"] / init["build"]["dockerfile"]).resolve().is_file()


def test_every_service_runs_after_init_with_its_usual_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "postgres", "init", *SERVICES, *OBSERVABILITY}
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["run", name]
        assert svc["depends_on"]["init"] == {"condition": "service_completed_successfully"}
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert env["LEADSTREAM_HTTP_HOST"] == "0.0.0.0"
        (mapping,) = svc["ports"]
        _, host, container = mapping.split(":")
        assert int(host) == DEFAULT_PORTS[name] and container == env["LEADSTREAM_HTTP_PORT"]
        probe = svc["healthcheck"]["test"][-1]
        assert f"127.0.0.1:{env['LEADSTREAM_HTTP_PORT']}/readyz" in probe
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert any(t.startswith("/tmp") for t in svc["tmpfs"])
        assert svc["image"] == services["init"]["image"]


def test_the_console_reads_the_services_on_the_compose_network() -> None:
    env = load({})["services"]["console"]["environment"]
    for name in ("projection", "outreach", "messaging", "discovery"):
        assert env[f"LEADSTREAM_CONSOLE_{name.upper()}_URL"] == f"http://{name}:8080"
    assert (
        load({"LEADSTREAM_CONSOLE_SESSION_SECRET": "k"})["services"]["console"]["environment"][
            "LEADSTREAM_CONSOLE_SESSION_SECRET"
        ]
        == "k"
    )
    raw = yaml.safe_load(COMPOSE.read_text())["services"]["console"]["environment"]
    assert raw["LEADSTREAM_CONSOLE_SESSION_SECRET"].startswith("${LEADSTREAM_CONSOLE_SESSION_SECRET")


KEYS = (
    "LEADSTREAM_LINKEDIN_WEBHOOK_SECRET",
    "LEADSTREAM_EMAIL_WEBHOOK_SECRET",
    "LEADSTREAM_UNSUBSCRIBE_SECRET",
    "LEADSTREAM_VIDEO_WEBHOOK_SECRET",
    "LEADSTREAM_KEY_ENCRYPTION_KEY",
)


def test_secrets_are_interpolated_not_written_in_the_file() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    env = raw["x-leadstream-env"]
    # No key has a value in the file: development gives unset keys development values, anything else sets them.
    for key in KEYS:
        assert env[key] == "${" + key + ":-}", key
        assert load({key: "w"})["x-leadstream-env"][key] == "w"
    assert "LEADSTREAM_WEBHOOK_SECRET" not in env
    assert "${POSTGRES_PASSWORD" in env["DATABASE_URL"]
    # Compose is development: the services start without keys; set LEADSTREAM_ENV=production to enforce them.
    assert load()["x-leadstream-env"]["LEADSTREAM_ENV"] == "development"
    assert load({"LEADSTREAM_ENV": "production"})["x-leadstream-env"]["LEADSTREAM_ENV"] == "production"


class _Status(BaseHTTPRequestHandler):
    status = 503

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def readyz_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Status]]]:
    handler = type("Handler", (_Status,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_the_service_healthcheck_fails_on_503_and_passes_on_200(
    compose: dict[str, Any], readyz_server: tuple[ThreadingHTTPServer, type[_Status]]
) -> None:
    """Run the exact healthcheck command (against a stand-in /readyz): not-ready must mean unhealthy."""
    server, handler = readyz_server
    code = compose["services"]["outreach"]["healthcheck"]["test"]
    assert code[:3] == ["CMD", "python", "-c"]
    snippet = code[3].replace("127.0.0.1:8080", f"127.0.0.1:{server.server_address[1]}")
    handler.status = 503
    assert subprocess.run([sys.executable, "-c", snippet], capture_output=True, timeout=30).returncode != 0
    handler.status = 200
    assert subprocess.run([sys.executable, "-c", snippet], capture_output=True, timeout=30).returncode == 0


def test_profiles_start_infra_services_and_observability_with_everything_they_depend_on(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    profiles = {name: set(svc.get("profiles", [])) for name, svc in services.items()}
    assert all(profiles.values()), "nothing starts without a profile"
    assert {n for n, p in profiles.items() if "infra" in p} == {"kafka", "postgres"}
    assert {n for n, p in profiles.items() if "services" in p} == {"kafka", "postgres", "init", *SERVICES}
    assert {n for n, p in profiles.items() if "observability" in p} == OBSERVABILITY
    # A service's dependencies are enabled by every profile that enables it (else compose refuses to start it).
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        for dep in depends:  # a list or a map of names
            assert profiles[name] <= profiles[dep], (name, dep)


def test_every_port_is_bound_to_localhost_only(compose: dict[str, Any]) -> None:
    mappings = [(name, m) for name, svc in compose["services"].items() for m in svc.get("ports", [])]
    assert len(mappings) >= 12
    assert [(n, m) for n, m in mappings if not str(m).startswith("127.0.0.1:")] == []


def test_credentials_are_marked_development_only() -> None:
    text = COMPOSE.read_text()
    lines = text.splitlines()
    for default in (
        "${POSTGRES_PASSWORD:-leadstream}",
        "${GRAFANA_ADMIN_PASSWORD:-admin}",
        "${LEADSTREAM_ENV:-development}",
    ):
        # Every line with the default says, on it or just above, that it is for development only.
        found = [i for i, line in enumerate(lines) if default in line]
        assert found, default
        for i in found:
            context = "\n".join(lines[max(0, i - 3) : i + 1]).lower()
            assert "development-only" in context or "dev-only" in context, (default, lines[i])


def test_traces_flow_from_the_services_through_the_collector_to_jaeger(compose: dict[str, Any]) -> None:
    collector = yaml.safe_load((COMPOSE.parent / "otel-collector.yaml").read_text())
    pipeline = collector["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(collector["receivers"])
    assert set(pipeline["processors"]) <= set(collector["processors"])
    (exporter,) = pipeline["exporters"]
    assert collector["exporters"][exporter]["endpoint"] == "jaeger:4317"
    assert compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    endpoint = compose["x-leadstream-env"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == f"http://otel-collector:{http.rsplit(':', 1)[1]}"
    mounts = compose["services"]["otel-collector"]["volumes"]
    assert "./otel-collector.yaml:/etc/otelcol/config.yaml:ro" in mounts
    assert "--config=/etc/otelcol/config.yaml" in compose["services"]["otel-collector"]["command"]


def _mounted(service: dict[str, Any], target: str) -> Path:
    (source,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == target]
    path = (COMPOSE.parent / source).resolve()
    assert path.exists(), source
    return path


@pytest.mark.timeout(1800)  # the chart fixture may wait for promtool's first build
def test_prometheus_scrapes_every_service_and_loads_the_charts_rules(
    compose: dict[str, Any], chart: Chart, tmp_path: Path
) -> None:
    prometheus = compose["services"]["prometheus"]
    config_path = _mounted(prometheus, "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text())
    (rule_file,) = config["rule_files"]
    assert _mounted(prometheus, rule_file) == (ROOT / "deploy/helm/leadstream/files/prometheus-rules.yaml").resolve()
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    for name, job in jobs.items():
        # The internal metrics port, not the API's.
        assert job["static_configs"] == [
            {"targets": [f"{name}:{compose['x-leadstream-env']['LEADSTREAM_METRICS_PORT']}"]}
        ]
        assert (
            compose["x-leadstream-env"]["LEADSTREAM_METRICS_PORT"]
            != compose["x-leadstream-env"]["LEADSTREAM_HTTP_PORT"]
        )
        assert job["honor_labels"] is True  # the metrics' own `service` label stays
    # promtool (built with Go by deploy/helm/check.sh) accepts the config with the rules where compose mounts them.
    promtool = chart.tools.promtool
    assert promtool is not None, "promtool is needed (deploy/helm/check.sh builds it with Go)"
    local = tmp_path / "prometheus.yml"
    local.write_text(config_path.read_text().replace(rule_file, str(_mounted(prometheus, rule_file))))
    checked = subprocess.run([str(promtool), "check", "config", str(local)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_provisions_prometheus_jaeger_and_the_charts_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = _mounted(grafana, "/etc/grafana/provisioning")
    datasources = yaml.safe_load((provisioning / "datasources" / "leadstream.yaml").read_text())["datasources"]
    assert {d["type"]: d["url"] for d in datasources} == {
        "prometheus": "http://prometheus:9090",
        "jaeger": "http://jaeger:16686",
    }
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "leadstream.yaml").read_text())["providers"]
    dashboards_dir = provider["options"]["path"]
    dashboard = _mounted(grafana, f"{dashboards_dir}/leadstream.json")
    assert dashboard == (ROOT / "deploy/helm/leadstream/files/grafana-dashboard.json").resolve()
    assert json.loads(dashboard.read_text())["templating"]["list"][0]["query"] == "prometheus"
