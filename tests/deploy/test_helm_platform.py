"""The chart's platform features, rendered with helm (default and ci/production-values.yaml) and checked against the
code: KafkaUser ACLs against what each service consumes and emits, Kafka TLS/SCRAM wiring, extension points,
autoscaling bounds, NetworkPolicies, the Ingress, the alert rules and the dashboard, migrations' users.

These need the rendered manifests: without helm (no Go to build it) they fail and say why.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from leadstream_schemas import EVENT_TYPES

from leadstream_cli.main import SERVICES
from services.runtime.settings import RuntimeSettings
from tests.deploy.chart import CHART_DIR, ROOT, Chart, Manifest, by_component, container, of_kind, values_file

pytestmark = pytest.mark.timeout(1800)

RULES_FILE = CHART_DIR / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART_DIR / "files" / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
# services/runtime/service.py stops within its shutdown grace (LEADSTREAM_SHUTDOWN_GRACE_S) after SIGTERM.
SHUTDOWN_GRACE_S = float(RuntimeSettings.model_fields["shutdown_grace_s"].default)


def rendered(chart: Chart, values: str = "production", *sets: str) -> list[Manifest]:
    if chart.offline:
        pytest.fail(f"helm is needed for the rendered-manifest tests ({chart.tools.reason}); install Go to build it")
    return chart.render(values, *sets)


def _env(c: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


@cache
def _consumed_topics(name: str) -> list[str]:
    """The contract topics the service's code consumes (its built app's consumers)."""
    service = importlib.import_module(f"services.{name}.app").build()
    return sorted({t for c in service.consumers for t in c.topics})


@cache
def _emitted_topics(name: str) -> set[str]:
    """Topics of the event classes the service's own modules construct (not match: `case X():`).

    The projection's workload.py builds events for the benchmarks only, never on the service's path.
    """
    files = [p for p in (ROOT / "services" / name).rglob("*.py") if "migrations" not in p.parts]
    source = "\n".join(p.read_text() for p in files if p.name != "workload.py")
    return {cls.topic for cls in EVENT_TYPES.values() if re.search(rf"(?<!case )\b{cls.__name__}\(", source)}


def test_each_service_values_say_what_its_code_consumes_and_emits(chart: Chart) -> None:
    services = chart.values()["services"]
    assert sorted(services) == sorted(SERVICES)
    for name, svc in services.items():
        assert sorted(svc["kafka"]["consumes"]) == _consumed_topics(name), name
        assert _emitted_topics(name) <= set(svc["kafka"]["produces"]), name
    assert _emitted_topics("projection") == set() and _emitted_topics("outreach") >= {"leadstream.campaign.v1"}


def test_each_kafkauser_may_touch_only_its_own_topics_dlqs_and_group(chart: Chart) -> None:
    docs = rendered(chart)
    users = by_component(docs, "KafkaUser")
    users.pop("dlq")  # the operators' user for `leadstream dlq` (test_helm_production.py)
    values = chart.values()["services"]
    on_kafka = [n for n in SERVICES if values[n]["kafka"]["consumes"] or values[n]["kafka"]["produces"]]
    assert sorted(users) == sorted(on_kafka) and "console" not in users  # the console uses no Kafka
    for name, user in users.items():
        assert (
            user["apiVersion"] == "kafka.strimzi.io/v1" and user["metadata"]["labels"]["strimzi.io/cluster"] == "events"
        )
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        consumes, produces = values[name]["kafka"]["consumes"], values[name]["kafka"]["produces"]
        expected: dict[tuple[str, str], set[str]] = {}
        for t in consumes:
            expected.setdefault(("topic", t), set()).update({"Read", "Describe"})
            expected.setdefault(("topic", f"{t}.dlq"), set()).update({"Write", "Describe"})
        for t in produces:
            expected.setdefault(("topic", t), set()).update({"Write", "Describe"})
        if consumes:
            group = RuntimeSettings(service_name=name).group_id  # the group the code joins
            expected[("group", group)] = {"Read"}
        acls = user["spec"]["authorization"]["acls"]
        got = {(a["resource"]["type"], a["resource"]["name"]): set(a["operations"]) for a in acls}
        assert got == expected, name
        assert all(a["resource"]["patternType"] == "literal" for a in acls), "no prefix ACLs: exactly these names"
        assert not any(ops & {"Create", "Delete", "Alter", "AlterConfigs", "All"} for ops in got.values())
    # With a topic prefix the ACLs and the group follow it, as the code's names do.
    prefixed = by_component(rendered(chart, "production", "kafka.topicPrefix=staging."), "KafkaUser")
    names = {a["resource"]["name"] for a in prefixed["video"]["spec"]["authorization"]["acls"]}
    assert (
        "staging.leadstream.lead.v1" in names
        and RuntimeSettings(service_name="video", topic_prefix="staging.").group_id in names
    )


def test_kafka_tls_and_scram_come_from_strimzi_secrets(chart: Chart) -> None:
    docs = rendered(chart)
    config = of_kind(docs, "ConfigMap")[0]["data"]
    assert config["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["LEADSTREAM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "LEADSTREAM_KAFKA_SASL_USERNAME" not in config  # per service: its own KafkaUser
    cafile = Path(config["LEADSTREAM_KAFKA_SSL_CAFILE"])
    users = by_component(docs, "KafkaUser")
    for name, deployment in by_component(docs, "Deployment").items():
        c = container(deployment)
        env = _env(c)
        if name not in users:  # the console: no Kafka, so no credentials and no SASL to configure
            assert env["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT" and name == "console"
            assert "LEADSTREAM_KAFKA_SASL_USERNAME" not in env
            continue
        user = users[name]["metadata"]["name"]
        assert env["LEADSTREAM_KAFKA_SASL_USERNAME"] == user
        assert env["LEADSTREAM_KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": user, "key": "password"}}
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(cafile.parent))
        volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "events-cluster-ca-cert"
        assert volume["secret"]["items"] == [{"key": cafile.name, "path": cafile.name}]
    # The settings the pods get are valid settings (the SASL validator passes with a user and a password).
    settings = RuntimeSettings(
        kafka_security_protocol=config["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"],
        kafka_sasl_mechanism=config["LEADSTREAM_KAFKA_SASL_MECHANISM"],
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        kafka_ssl_cafile=str(cafile),
    )
    assert settings.kafka_security_protocol == "SASL_SSL"
    # Without KafkaUsers, one user and password Secret for every pod; the chart refuses SASL without them.
    no_users = chart.helm(
        "-f",
        str(values_file("production")),
        "--set",
        "strimzi.kafkaUsers.enabled=false",
        "--set",
        "strimzi.kafkaUsers.dlq.enabled=false",
        "--set",
        "strimzi.enabled=false",
    )
    assert no_users.returncode != 0 and "kafka.sasl.username is required" in no_users.stderr


def test_migrations_run_as_their_own_user_and_services_do_not_migrate(chart: Chart) -> None:
    docs = rendered(chart)
    assert of_kind(docs, "ConfigMap")[0]["data"]["LEADSTREAM_MIGRATE_ON_START"] == "false"
    assert RuntimeSettings(migrate_on_start="false").migrate_on_start is False
    (migrate,) = by_component(docs, "Job").values()
    c = container(migrate)
    # The migrator's Secret comes last: its DATABASE_URL wins over the runtime one.
    assert c["envFrom"][:2] == [
        {"secretRef": {"name": "leadstream-runtime"}},
        {"secretRef": {"name": "leadstream-migrator"}},
    ]
    assert [k for k in _env(c) if k.startswith("LEADSTREAM_KAFKA_")] == [], "migrate never talks to Kafka"
    for deployment in of_kind(docs, "Deployment"):
        refs = [s["secretRef"]["name"] for s in container(deployment)["envFrom"] if "secretRef" in s]
        assert "leadstream-migrator" not in refs


def test_global_and_per_service_extension_points_reach_every_pod(chart: Chart) -> None:
    docs = rendered(chart)
    for w in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        pod = w["spec"]["template"]
        c = container(w)
        assert pod["metadata"]["annotations"]["example.com/owner"] == "platform"
        assert _env(c)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4318"
        assert {"name": "corporate-ca", "configMap": {"name": "corporate-ca-bundle"}} in pod["spec"]["volumes"]
        assert {"name": "corporate-ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in c["volumeMounts"]
        assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
        assert pod["spec"]["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    for deployment in of_kind(docs, "Deployment"):
        c = container(deployment)
        assert {"configMapRef": {"name": "leadstream-site-settings"}} in c["envFrom"]
    (job,) = of_kind(docs, "Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"workload": "batch"}
    assert [i["name"] for i in spec["initContainers"]] == ["wait-for-postgres"]


def test_pods_outlive_their_shutdown_and_probe_health_and_readiness(chart: Chart) -> None:
    for values in ("default", "production"):
        for deployment in of_kind(rendered(chart, values), "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            c = container(deployment)
            pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
            assert pod["terminationGracePeriodSeconds"] > pre_stop + SHUTDOWN_GRACE_S
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_autoscaling_never_exceeds_the_partitions(chart: Chart) -> None:
    docs = rendered(chart)
    deployments = by_component(docs, "Deployment")
    scaled = by_component(docs, "ScaledObject")
    assert sorted(scaled) == ["enrichment", "outreach"]
    for name, so in scaled.items():
        assert "replicas" not in deployments[name]["spec"], "the autoscaler owns the replica count"
        assert so["spec"]["scaleTargetRef"]["name"] == deployments[name]["metadata"]["name"]
        assert so["spec"]["maxReplicaCount"] == 6  # topics.partitions
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "kafka" and trigger["authenticationRef"] == {"name": "leadstream-kafka-keda"}
        assert trigger["metadata"]["consumerGroup"] == RuntimeSettings(service_name=name).group_id
    assert scaled["outreach"]["spec"]["minReplicaCount"] == 2
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployments["discovery"]["metadata"]["name"]
    assert hpa["spec"]["maxReplicas"] == 4 and "replicas" not in deployments["discovery"]["spec"]
    assert deployments["video"]["spec"]["replicas"] == 2
    too_many = chart.helm(
        "-f", str(values_file("production")), "--set", "services.enrichment.autoscaling.maxReplicas=7"
    )
    assert too_many.returncode != 0 and "exceeds topics.partitions=6" in too_many.stderr
    # The console consumes no topic (discovery does since it runs campaigns' audiences).
    no_group = chart.helm(
        "-f",
        str(values_file("production")),
        "--set",
        "services.console.autoscaling.enabled=true",
        "--set",
        "services.console.autoscaling.type=keda",
    )
    assert no_group.returncode != 0 and "consumes no topic" in no_group.stderr


def _api_services() -> set[str]:
    """Services whose app serves /v1 routes of their own (every service serves the runtime's /v1/tokens)."""
    out = set()
    for name in SERVICES:
        app = importlib.import_module(f"services.{name}.app").build().app
        if any(path.startswith("/v1/") and not path.startswith("/v1/tokens") for path in app.openapi()["paths"]):
            out.add(name)
    return out


def test_the_ingress_exposes_exactly_the_apis_each_on_its_own_host(chart: Chart) -> None:
    docs = rendered(chart)
    (ingress,) = of_kind(docs, "Ingress")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    hosts = {}
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        backend = path["backend"]["service"]
        assert path["path"] == "/" and backend["port"] == {"name": "http"}
        hosts[rule["host"]] = services[backend["name"]]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert set(hosts.values()) == _api_services() and "enrichment" not in hosts.values()
    assert hosts["outreach.example.com"] == "outreach" and hosts["projection.leadstream.example.com"] == "projection"
    assert ingress["spec"]["tls"] == [{"hosts": sorted(hosts, key=list(hosts).index), "secretName": "leadstream-tls"}]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert of_kind(rendered(chart, "default"), "Ingress") == []


def test_network_policies_allow_only_kafka_postgres_dns_collector_and_providers(chart: Chart) -> None:
    docs = rendered(chart)
    policies = by_component(docs, "NetworkPolicy")
    # One per service, and one per Job (migrate here: test_helm_production.py checks the Jobs').
    assert sorted(policies) == sorted([*SERVICES, "migrate"])
    policies = {name: policy for name, policy in policies.items() if name in SERVICES}
    exposed = _api_services()
    values = chart.values()["services"]
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == name
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        # Prometheus reaches only the metrics port; the ingress controller (exposed services) and the services that
        # call this one (the console's calls) only the API port.
        rules = {rule["ports"][0]["port"]: rule["from"] for rule in spec["ingress"]}
        assert all(len(rule["ports"]) == 1 for rule in spec["ingress"])
        namespaces = {
            port: [
                p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for p in peers
                if "namespaceSelector" in p
            ]
            for port, peers in rules.items()
        }
        callers = [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in rules.get("http", [])
            if "podSelector" in p
        ]
        assert namespaces["metrics"] == ["monitoring"], name
        assert namespaces.get("http", []) == (["ingress-nginx"] if name in exposed else []), name
        assert callers == [c for c in sorted(values) if name in values[c].get("calls", [])], name
        assert set(rules) == {"metrics", *(["http"] if name in exposed or callers else [])}, name
        egress = spec["egress"]
        ports = [sorted(p["port"] for p in r["ports"]) for r in egress]
        # Kafka: the default ports and the bootstrap server's (events-kafka-bootstrap.kafka.svc:9094).
        assert ports[:4] == [[53, 53], [9092, 9093, 9094], [5432], [4318]]
        kafka_peer = egress[1]["to"][0]
        assert kafka_peer["podSelector"]["matchLabels"] == {"strimzi.io/cluster": "events", "strimzi.io/kind": "Kafka"}
        assert kafka_peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kafka"}
        assert egress[2]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
        # Beyond those, the services it calls over HTTP (the console), then its providers (none for the projection).
        calls = values[name].get("calls", [])
        called = [
            r["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for r in egress[4 : 4 + len(calls)]
        ]
        assert called == calls and all(
            r["ports"] == [{"port": "http", "protocol": "TCP"}] for r in egress[4 : 4 + len(calls)]
        )
        assert egress[4 + len(calls) :] == values[name].get("networkPolicy", {}).get("egress", []), name
    assert len(policies["projection"]["spec"]["egress"]) == 4


def _alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_alert_rules_are_the_shared_file_with_runbooks_in_the_operations_guide(chart: Chart) -> None:
    source = _alerts(yaml.safe_load(RULES_FILE.read_text())["groups"])
    assert set(source) >= {
        "LeadstreamDeadLetters",
        "LeadstreamConsumerLagHigh",
        "LeadstreamOutboxBacklog",
        "LeadstreamOutboxParked",
        "LeadstreamNotReady",
        "LeadstreamSendFailures",
    }
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)
    }
    for name, rule in source.items():
        url = rule["annotations"]["runbook_url"]
        assert url == f"https://github.com/leadstream/leadstream/blob/main/docs/operations.md#{name.lower()}"
        assert name.lower() in headings, f"docs/operations.md has no runbook section for {name}"
    (rule_object,) = of_kind(rendered(chart), "PrometheusRule")
    assert rule_object["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    deployed = _alerts(rule_object["spec"]["groups"])
    assert set(deployed) == set(source)
    for name, rule in deployed.items():
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/leadstream/operations#{name.lower()}"
        if name == "LeadstreamDown":
            # Its `up{...}` selector is the release's (test_helm_production.py); what follows it is the file's.
            assert rule["expr"].split("}", 1)[1] == source[name]["expr"].split("}", 1)[1]
        else:
            # The file's expression with this release's matchers in each selector (test_helm_production.py).
            scope = 'namespace="leadstream", release="leadstream"'
            unscoped = rule["expr"].replace("{" + scope + "}", "").replace("{" + scope + ", ", "{")
            assert scope in rule["expr"] and unscoped == source[name]["expr"], name
        rule = {**rule, "expr": source[name]["expr"]}
        assert {**rule, "annotations": {}} == {**source[name], "annotations": {}}


def test_the_dashboard_configmap_carries_the_shared_dashboard_for_the_sidecar(chart: Chart) -> None:
    docs = rendered(chart)
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "leadstream"}
    dashboard = json.loads(cm["data"]["leadstream.json"])
    # The shared file, but for its namespace and release variables (this release's own as their defaults, and always
    # among their options: test_dashboard.py) and its uid and title (this release's: one Grafana may load several
    # releases' dashboards).
    source = json.loads(DASHBOARD_FILE.read_text())
    assert source["uid"] == "leadstream-overview"  # compose's, the file's
    assert dashboard["uid"] != source["uid"] and dashboard["uid"].startswith("leadstream-")
    assert dashboard["title"] == f"{source['title']} (leadstream/leadstream)"
    source["uid"], source["title"] = dashboard["uid"], dashboard["title"]
    for variable in source["templating"]["list"]:
        if variable["name"] in ("namespace", "release"):
            # The tests render release `leadstream` in namespace `leadstream`.
            name, value = variable["name"], "leadstream"
            variable["current"] = {"selected": True, "text": value, "value": value}
            listed = re.fullmatch(rf"label_values\((.+), {name}\)", variable["query"]["query"])
            assert listed, variable["query"]
            query = (
                f"query_result(group by ({name}) (last_over_time({listed[1]}[$__range]))"
                f' or label_replace(vector(1), "{name}", "{value}", "", ""))'
            )
            variable["query"]["query"] = variable["definition"] = query
            variable["regex"] = f'/{name}="([^"]+)"/'
            variable["description"] += (
                f" This release's dashboard always offers its own ({value}), also before its pods' first scrape."
            )
    assert dashboard == source
    assert len(dashboard["panels"]) >= 10
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "namespace", "release", "service"]


def test_topics_get_min_insync_replicas_on_both_paths(chart: Chart) -> None:
    default_jobs = by_component(rendered(chart, "default"), "Job")
    env = _env(container(default_jobs["topics"]))
    assert env["LEADSTREAM_TOPIC_MIN_INSYNC_REPLICAS"] == "2" and env["LEADSTREAM_TOPIC_REPLICATION_FACTOR"] == "3"
    single = by_component(rendered(chart, "default", "topics.replicationFactor=1"), "Job")
    assert _env(container(single["topics"]))["LEADSTREAM_TOPIC_MIN_INSYNC_REPLICAS"] == "1"
    topics = of_kind(rendered(chart, "strimzi", "topics.minInsyncReplicas=3"), "KafkaTopic")
    assert {t["spec"]["config"]["min.insync.replicas"] for t in topics} == {"3"}
    refused = chart.helm("-f", str(values_file("default")), "--set", "topics.minInsyncReplicas=4")
    assert refused.returncode != 0 and "exceeds topics.replicationFactor=3" in refused.stderr


def test_a_new_service_is_one_values_entry(chart: Chart, tmp_path: Path) -> None:
    """The console (or a future webhooks service) needs only its entry: every template follows."""
    extra = tmp_path / "console.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "services": {"console": {"kafka": {"consumes": [], "produces": []}, "ingress": {"enabled": True}}},
                "networkPolicy": {"enabled": True},
                "ingress": {"enabled": True},
            }
        )
    )
    result = chart.helm("-f", str(values_file("default")), "-f", str(extra))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"):
        assert "console" in by_component(docs, kind), kind
    assert container(by_component(docs, "Deployment")["console"])["args"] == ["run", "console"]
    (ingress,) = of_kind(docs, "Ingress")
    assert "console.leadstream.example.com" in [r["host"] for r in ingress["spec"]["rules"]]


def test_check_sh_unit_tests_the_alert_rules_with_promtool(chart: Chart) -> None:
    """promtool (built with Go like helm) accepts the rules and their unit tests pass; a broken expectation fails."""
    promtool = chart.tools.promtool
    if promtool is None:
        pytest.fail(f"promtool is needed ({chart.tools.reason or 'not built'}); deploy/helm/check.sh builds it with Go")
    tests = ROOT / "deploy" / "prometheus" / "alerts-test.yaml"
    ok = subprocess.run([str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tests.parent / "broken-test.yaml"
    try:
        broken.write_text(
            tests.read_text().replace(
                'summary: "outreach in namespace ls has 800 events', 'summary: "outreach in namespace ls has 801 events'
            )
        )
        failed = subprocess.run(
            [str(promtool), "test", "rules", str(broken)], capture_output=True, text=True, timeout=120
        )
    finally:
        broken.unlink()
    assert failed.returncode != 0 and "LeadstreamOutboxBacklog" in failed.stdout + failed.stderr
    checked = subprocess.run([str(promtool), "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked.stdout + checked.stderr
