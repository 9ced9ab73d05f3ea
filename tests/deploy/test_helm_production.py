"""What a production install needs beyond a valid render: the pods reach Kafka through the NetworkPolicies, each
service's replicas are spread apart, no credential can be put in plain values, the contract's topic configs hold on
the Strimzi path too, autoscaling never stops a service, the replay Job renders only what `leadstream replay start`
accepts under a valid Job name for any release, and the install notes give commands that work. Under a default-deny
every Job reaches what it talks to, operators have a KafkaUser for the dead-letter commands, LeadstreamDown
watches exactly this release's services, every other alert this release's series (two releases in one namespace stay
apart) and each summary and description names the release and namespace, every per-service object follows the one
list of enabled services, and a call to a service that is not enabled is refused.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml
from leadstream_schemas import TOPICS
from pydantic import SecretStr

from leadstream_cli.dlq import dlq_topic, redrive_group
from leadstream_cli.main import SERVICES, app
from services.runtime.kafka import MANAGED_CONFIGS
from services.runtime.settings import RuntimeSettings
from tests.deploy.chart import (
    CHART_DIR,
    ROOT,
    Chart,
    Manifest,
    by_component,
    deep_merge,
    load_yaml_docs,
    of_kind,
    render_notes,
    values_file,
)

pytestmark = pytest.mark.timeout(1800)


def rendered(chart: Chart, values: str, *sets: str) -> list[Manifest]:
    if chart.offline:
        pytest.fail(f"helm is needed for the rendered-manifest tests ({chart.tools.reason}); install Go to build it")
    return chart.render(values, *sets)


def _kafka_egress(policy: Manifest) -> dict[str, Any]:
    """The egress rule of a service's NetworkPolicy towards Kafka (the one after DNS)."""
    rule: dict[str, Any] = policy["spec"]["egress"][1]
    return rule


def _service_policies(docs: list[Manifest]) -> dict[str, Manifest]:
    """The services' NetworkPolicies by service (the Jobs have theirs too)."""
    return {name: p for name, p in by_component(docs, "NetworkPolicy").items() if name in SERVICES}


def _bootstrap_ports(docs: list[Manifest]) -> set[int]:
    servers = of_kind(docs, "ConfigMap")[0]["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    return {int(s.rsplit(":", 1)[1]) for s in servers.split(",")}


def test_network_policies_let_the_pods_reach_kafka_on_the_bootstrap_port_in_the_clusters_namespace(
    chart: Chart,
) -> None:
    # Production: a listener on 9094, the brokers in `kafka`, the operators watching the release namespace.
    docs = rendered(chart, "production")
    assert _bootstrap_ports(docs) == {9094}
    for name, policy in _service_policies(docs).items():
        rule = _kafka_egress(policy)
        assert _bootstrap_ports(docs) <= {p["port"] for p in rule["ports"]}, name
        (peer,) = rule["to"]
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kafka"}, name
    assert {t["metadata"]["namespace"] for t in of_kind(docs, "KafkaTopic")} == {"leadstream"}
    # The default bootstrap address follows the cluster's namespace too.
    strimzi = rendered(
        chart, "strimzi", "strimzi.clusterNamespace=kafka", "networkPolicy.enabled=true", "kafka.tls.enabled=true"
    )
    assert (
        of_kind(strimzi, "ConfigMap")[0]["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "events-kafka-bootstrap.kafka.svc:9093"
    )
    for policy in _service_policies(strimzi).values():
        assert _kafka_egress(policy)["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "kafka"
        }
    # Without clusterNamespace: strimzi.namespace, as before.
    watched = rendered(chart, "strimzi", "strimzi.namespace=kafka")
    assert (
        of_kind(watched, "ConfigMap")[0]["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "events-kafka-bootstrap.kafka.svc:9092"
    )
    # Any Kafka: every bootstrap server's port is allowed, the configured ones stay.
    other = rendered(
        chart, "default", "networkPolicy.enabled=true", "kafka.bootstrapServers=b-1.msk:9096\\,b-2.msk:9196"
    )
    for policy in _service_policies(other).values():
        assert [p["port"] for p in _kafka_egress(policy)["ports"]] == [9092, 9093, 9096, 9196]


def test_each_services_replicas_are_spread_apart_by_default(chart: Chart) -> None:
    for values in ("default", "production"):
        docs = rendered(chart, values)
        for kind in ("Deployment", "Job"):
            for name, workload in by_component(docs, kind).items():
                labels = workload["spec"]["template"]["metadata"]["labels"]
                constraints = workload["spec"]["template"]["spec"]["topologySpreadConstraints"]
                assert constraints, (values, name)
                for c in constraints:
                    # Exactly this component's pods: not every leadstream pod (a zone could then hold all of one
                    # service's replicas), and not none (a constraint without a selector spreads nothing).
                    selector = c["labelSelector"]["matchLabels"]
                    assert selector.items() <= labels.items(), (values, name)
                    assert selector["app.kubernetes.io/component"] == name, (values, name)
                    if values == "default":
                        assert (
                            c["topologyKey"] == "kubernetes.io/hostname" and c["whenUnsatisfiable"] == "ScheduleAnyway"
                        )
    # A constraint with its own labelSelector is kept as given.
    overrides = by_component(rendered(chart, "overrides"), "Deployment")["discovery"]
    (given,) = overrides["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert given["labelSelector"] == {"matchLabels": {"app.kubernetes.io/name": "leadstream"}}


def _secret_settings() -> set[str]:
    """Environment names of every setting the code holds as a secret (SecretStr), plus the database URL."""
    classes: list[type[RuntimeSettings]] = [RuntimeSettings]
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.settings")
        classes += [
            c
            for c in vars(module).values()
            if isinstance(c, type) and issubclass(c, RuntimeSettings) and c.__module__ == module.__name__
        ]
    names = {"DATABASE_URL", "LEADSTREAM_DATABASE_URL"}
    for cls in classes:
        for field, info in cls.model_fields.items():
            if SecretStr in (info.annotation, *typing.get_args(info.annotation)):
                names.add(f"LEADSTREAM_{field.upper()}")
    return names


def _all_settings() -> set[str]:
    out = set()
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.settings")
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, RuntimeSettings):
                out |= {f"LEADSTREAM_{f.upper()}" for f in cls.model_fields}
    return out


def test_values_schema_refuses_credentials_in_plain_values() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    secrets = _secret_settings()
    assert {"LEADSTREAM_KEY_ENCRYPTION_KEY", "LEADSTREAM_KAFKA_SASL_PASSWORD", "LEADSTREAM_LLM_API_KEY"} <= secrets
    for key in sorted(secrets):
        # `config` is a ConfigMap; `env` lands in the Deployment: both readable by anyone who can read the release.
        for where in (
            {"config": {key: "x"}},
            {"services": {"outreach": {"env": {key: "x"}}}},
            {"defaults": {"env": {key: "x"}}},
        ):
            errors = list(validator.iter_errors(deep_merge(defaults, where)))
            assert errors, f"{key} accepted in {where}"
    # Every other setting may still be set in plain values.
    plain = {k: "x" for k in sorted(_all_settings() - secrets)}
    assert [e.message for e in validator.iter_errors(deep_merge(defaults, {"config": plain}))] == []


def test_the_replay_job_name_is_a_valid_job_name_for_any_release(chart: Chart) -> None:
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    name = "a" * 39 + "1"
    result = chart.helm(
        "-f",
        str(values_file("overrides")),
        "--set",
        f"replayJob.name={name}",
        release="customer-analytics-production",
    )
    assert result.returncode == 0, result.stderr
    for job in of_kind(load_yaml_docs(result.stdout), "Job"):
        job_name = job["metadata"]["name"]
        # A Job's name is also its pods' job-name label: at most 63 characters, alphanumeric at both ends.
        assert len(job_name) <= 63 and job_name[-1].isalnum() and job_name[0].isalnum(), job_name
    replay = by_component(load_yaml_docs(result.stdout), "Job")["replay"]
    assert replay["metadata"]["name"].endswith(f"-replay-{name}")
    trailing = chart.helm("-f", str(values_file("overrides")), "--set", "replayJob.name=week_")
    assert trailing.returncode != 0


def test_the_install_notes_give_a_token_command_the_cli_accepts(chart: Chart, tmp_path: Path) -> None:
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    notes = render_notes(chart, tmp_path)
    line = next(line for line in notes.splitlines() if "leadstream tokens create" in line)
    args = shlex.split(line.split("-- leadstream ", 1)[1].replace("<workspace-id>", "acme"))
    # Parse it as the CLI would (typer's own click: `tokens`, then `create`), without running it.
    group: Any = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="leadstream")
    tokens = group.get_command(ctx, args[0])
    create = tokens.get_command(ctx, args[1])
    assert create is not None, args
    create.make_context("create", args[2:], parent=ctx)  # raises MissingParameter for a required option left out
    # Production serves no /docs, and /metrics is on the internal port, not the API's.
    assert "/docs" not in notes and "/metrics on the internal port 9090" in notes
    assert "OpenAPI at /docs" in render_notes(chart, tmp_path / "dev", "environment=development")


def test_topic_configs_of_the_contract_cannot_be_overridden_on_the_kafkatopics(chart: Chart) -> None:
    """``topics apply`` owns these configs on the Job path; on the Strimzi path topics.config must not change them
    (a retention would silently delete the events replays and new consumers read from offset 0)."""
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    for key in MANAGED_CONFIGS:
        escaped = key.replace(".", "\\.")  # a dot in a --set key
        result = chart.helm("-f", str(values_file("strimzi")), "--set", f"topics.config.{escaped}=1")
        assert result.returncode != 0 and f"topics.config.{key}: the chart sets it" in result.stderr, key
    extra = rendered(chart, "strimzi", "topics.config.max\\.message\\.bytes=2097152")
    for topic in of_kind(extra, "KafkaTopic"):
        assert topic["spec"]["config"]["max.message.bytes"] == "2097152"
        assert topic["spec"]["config"]["retention.ms"] == -1


def test_autoscaling_never_scales_a_service_to_zero(chart: Chart) -> None:
    """KEDA would scale to zero on an empty lag, but every service serves an API and runs durable timers
    (outreach's scheduled sends, enrichment's retries, webhooks' deliveries) that no lag announces; an HPA refuses
    0 too. The schema refuses it for either type, in defaults and per service."""
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    for setting in ("services.outreach.autoscaling.minReplicas=0", "defaults.autoscaling.minReplicas=0"):
        for kind in ("keda", "hpa"):
            result = chart.helm(
                "-f",
                str(values_file("production")),
                "--set",
                setting,
                "--set",
                f"services.outreach.autoscaling.type={kind}",
            )
            assert result.returncode != 0 and "minReplicas: Must be greater than or equal to 1" in result.stderr
    scaled = by_component(rendered(chart, "production"), "ScaledObject")
    assert all(so["spec"]["minReplicaCount"] >= 1 for so in scaled.values())


def test_the_metrics_listener_cannot_share_the_api_port(chart: Chart) -> None:
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    same = chart.helm("-f", str(values_file("default")), "--set", "metrics.port=8080")
    assert same.returncode != 0 and "metrics.port=8080 is http.port" in same.stderr


def test_the_replay_job_refuses_what_replay_start_refuses(chart: Chart) -> None:
    """`leadstream replay start` refuses --promote-when-done with --since: rendered, every pod's init container would
    fail until the Job gives up. The chart refuses it instead."""
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    both = chart.helm("-f", str(values_file("overrides")), "--set", "replayJob.promoteWhenDone=true")
    assert both.returncode != 0 and "promotes full rebuilds only" in both.stderr
    from typer.testing import CliRunner

    refused = CliRunner().invoke(
        app, ["replay", "start", "--into", "r1", "--workers", "2", "--since", "7d", "--promote-when-done"]
    )
    words = " ".join(re.sub(r"[│╭╮╰╯─]", " ", refused.output).split())  # rich's error panel wraps the text
    assert refused.exit_code != 0 and "promotes full rebuilds only" in words, refused.output


# What each Job talks to, by the command it runs: `migrate` only Postgres, `topics apply` only Kafka, the replay's
# pods both (they coordinate through Postgres, never with each other: services/projection/pods.py).
JOB_REACH = {"migrate": ["postgres"], "topics": ["kafka"], "replay": ["kafka", "postgres"]}


def _selecting(policies: list[Manifest], pod_labels: dict[str, str]) -> list[Manifest]:
    """The NetworkPolicies whose podSelector selects a pod with these labels."""
    return [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()]


def test_every_jobs_pods_reach_what_they_talk_to_under_a_default_deny(chart: Chart) -> None:
    """Under a namespace default-deny (which the services' NetworkPolicies assume) a Job's pods without a policy of
    their own reach nothing, and `helm install` hangs on its pre-install hook. Each Job gets DNS and what it talks
    to, from the same values as the services' (the same peers and ports), and nothing reaches it; a hook Job's
    policy is a hook that Helm creates before the Job."""
    cases = {
        "default": rendered(
            chart, "default", "networkPolicy.enabled=true", "replayJob.enabled=true", "replayJob.name=r1"
        ),
        "production": rendered(chart, "production", "replayJob.enabled=true", "replayJob.name=r1"),
    }
    for values, docs in cases.items():
        # The services' own rules: DNS, Kafka, Postgres (then the collector).
        dns, kafka, postgres = _service_policies(docs)["projection"]["spec"]["egress"][:3]
        rules = {"kafka": kafka, "postgres": postgres}
        jobs = by_component(docs, "Job")
        assert sorted(jobs) == (["migrate", "replay", "topics"] if values == "default" else ["migrate", "replay"])
        policies = of_kind(docs, "NetworkPolicy")
        for name, job in jobs.items():
            (policy,) = _selecting(policies, job["spec"]["template"]["metadata"]["labels"])  # its own, no service's
            spec = policy["spec"]
            assert spec["policyTypes"] == ["Ingress", "Egress"] and not spec.get("ingress"), (values, name)
            assert spec["egress"] == [dns, *(rules[target] for target in JOB_REACH[name])], (values, name)
            job_hook = job["metadata"].get("annotations", {})
            policy_hook = policy["metadata"].get("annotations", {})
            if name == "replay":
                assert policy_hook == job_hook == {}, values  # not hooks: both applied with the release
                continue
            # Helm creates a pre-install hook's resources before any of the release's, in order of weight (then name:
            # helm's pkg/action/hooks.go), and deletes hook-succeeded ones only once every hook of the event succeeded.
            assert policy_hook["helm.sh/hook"] == job_hook["helm.sh/hook"] == "pre-install,pre-upgrade"
            assert int(policy_hook["helm.sh/hook-weight"]) < int(job_hook["helm.sh/hook-weight"]), (values, name)
            assert policy_hook["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    # Production: the Strimzi brokers in `kafka` on the bootstrap port (9094), Postgres at its ipBlock.
    replay = by_component(cases["production"], "NetworkPolicy")["replay"]
    kafka_rule, postgres_rule = replay["spec"]["egress"][1:]
    assert kafka_rule["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kafka"}
    assert 9094 in [p["port"] for p in kafka_rule["ports"]]
    assert postgres_rule == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    # Rules of your own for every Job (an init container that waits for something else), none for the services.
    extra = rendered(chart, "default", "networkPolicy.enabled=true", "hooks.networkPolicy.egress[0].ports[0].port=8200")
    for name, policy in by_component(extra, "NetworkPolicy").items():
        added = policy["spec"]["egress"][-1] == {"ports": [{"port": 8200}]}
        assert added == (name in JOB_REACH), name
    # Without networkPolicy.enabled, no policy at all.
    assert of_kind(rendered(chart, "default", "replayJob.enabled=true", "replayJob.name=r1"), "NetworkPolicy") == []


def test_the_dlq_kafkauser_allows_exactly_what_the_dlq_commands_use(chart: Chart, tmp_path: Path) -> None:
    """A service's KafkaUser may not read dead letters nor write to a topic it only consumes, so `leadstream dlq
    list|redrive` need a user of their own (strimzi.kafkaUsers.dlq): exactly the names leadstream_cli/dlq.py uses,
    for every contract topic, under this installation's topic prefix."""
    for prefix in ("", "staging."):
        docs = rendered(chart, "production", *([f"kafka.topicPrefix={prefix}"] if prefix else []))
        user = by_component(docs, "KafkaUser")["dlq"]
        assert user["metadata"]["name"] == "leadstream-dlq" and user["metadata"]["namespace"] == "leadstream"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "events"
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        acls = user["spec"]["authorization"]["acls"]
        got = {
            (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"]): set(a["operations"])
            for a in acls
        }
        settings = RuntimeSettings(topic_prefix=prefix)
        expected: dict[tuple[str, str, str], set[str]] = {}
        for topic in TOPICS:
            dlq = dlq_topic(settings, topic)  # what `list` (without a group) and `redrive` read
            expected[("topic", dlq, "literal")] = {"Describe", "Read"}
            # `redrive` re-publishes a dead letter to its original topic: the topic the .dlq is the twin of.
            expected[("topic", settings.topic_name(topic), "literal")] = {"Describe", "Write"}
            expected[("group", redrive_group(dlq, None, None), "prefix")] = {"Read"}
        assert got == expected, prefix
        groups = [name for kind, name, _ in got if kind == "group"]
        for topic in TOPICS:
            dlq = dlq_topic(settings, topic)
            # Every group `redrive` commits its progress in, whatever the filter, is its topic's prefix ACL.
            for code, group in ((None, None), ("handler_error", None), (None, "leadstream-enrichment"), ("x", "y")):
                committed_in = redrive_group(dlq, code, group)
                assert [g for g in groups if committed_in.startswith(g)] == [redrive_group(dlq, None, None)]
            # Another installation's (another prefix) never.
            other = redrive_group(dlq_topic(RuntimeSettings(topic_prefix="other."), topic), None, None)
            assert not any(other.startswith(g) for g in groups)
    # Off by default; a Strimzi resource, so refused without Strimzi, naming the setting; its keys are checked.
    assert "dlq" not in by_component(rendered(chart, "strimzi", "strimzi.kafkaUsers.enabled=true"), "KafkaUser")
    no_strimzi = chart.helm("-f", str(values_file("default")), "--set", "strimzi.kafkaUsers.dlq.enabled=true")
    assert no_strimzi.returncode != 0 and "strimzi.kafkaUsers.dlq.enabled needs strimzi.enabled" in no_strimzi.stderr
    typo = chart.helm("-f", str(values_file("strimzi")), "--set", "strimzi.kafkaUsers.dlq.enable=true")
    assert typo.returncode != 0 and "strimzi.kafkaUsers.dlq" in typo.stderr
    # The install notes give the command as that user: the Secret the User Operator writes (in strimzi.namespace),
    # the password through stdin into the settings the CLI reads, and a `dlq list` the CLI accepts.
    notes = render_notes(
        chart, tmp_path, "strimzi.enabled=true", "strimzi.kafkaUsers.dlq.enabled=true", "strimzi.namespace=ops"
    )
    line = next(line for line in notes.splitlines() if "exec leadstream dlq list" in line)
    assert "kubectl -n ops get secret leadstream-dlq -o jsonpath='{.data.password}' | base64 -d |" in line
    script = shlex.split(line.split(" -- ", 1)[1])
    assert script[:2] == ["sh", "-c"]
    probe = script[2].replace(
        "exec leadstream dlq list --topic lead",
        f"exec {shlex.quote(sys.executable)} -c "
        '"from services.runtime.settings import RuntimeSettings as S; s = S(); '
        'print(s.kafka_sasl_username, s.kafka_sasl_password.get_secret_value())"',
    )
    assert probe != script[2]
    ran = subprocess.run(["sh", "-c", probe], input="pa ss=word", capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert ran.stdout.split("\n")[0] == "leadstream-dlq pa ss=word", ran.stderr
    args = shlex.split(script[2].split("exec leadstream ", 1)[1])
    cli: Any = typer.main.get_command(app)
    ctx = cli.context_class(cli, info_name="leadstream")
    listing = cli.get_command(ctx, args[0]).get_command(ctx, args[1])
    listing.make_context("list", args[2:], parent=ctx)  # raises for an option the CLI does not know


def test_leadstream_down_watches_exactly_this_releases_enabled_services(chart: Chart, tmp_path: Path) -> None:
    """LeadstreamDown's selector is this release's: its namespace and the Services of the enabled services (the
    ServiceMonitor's targets carry the Service's name as `service`). A disabled service, another release (in the
    same namespace or another) and another application with a job named like a service never fire it."""
    if chart.offline or chart.tools.promtool is None:
        pytest.fail(f"helm and promtool are needed ({chart.tools.reason or 'promtool not built'})")

    def render(*sets: str, release: str = "leadstream") -> list[Manifest]:
        args = ["-f", str(values_file("production"))]
        for s in sets:
            args += ["--set", s]
        result = chart.helm(*args, release=release)
        assert result.returncode == 0, result.stderr
        return load_yaml_docs(result.stdout)

    def down_rule(docs: list[Manifest]) -> tuple[list[dict[str, Any]], str]:
        (rule_object,) = of_kind(docs, "PrometheusRule")
        groups = rule_object["spec"]["groups"]
        (expr,) = [r["expr"] for g in groups for r in g["rules"] if r.get("alert") == "LeadstreamDown"]
        return groups, expr

    for sets, release in (
        (("services.video.enabled=false",), "acme"),
        (("fullnameOverride=crm",), "leadstream"),
    ):
        docs = render(*sets, release=release)
        _, expr = down_rule(docs)
        selected = re.fullmatch(r'up\{namespace="leadstream", service=~"([^"]*)"\} == 0\s*', expr)
        assert selected, expr
        # Exactly the Services the Deployments are rendered with.
        assert sorted(selected.group(1).split("|")) == sorted(s["metadata"]["name"] for s in of_kind(docs, "Service"))
    docs = render("services.video.enabled=false", release="acme")
    groups, _ = down_rule(docs)
    services = {
        s["metadata"]["labels"]["app.kubernetes.io/component"]: s["metadata"]["name"] for s in of_kind(docs, "Service")
    }
    assert "video" not in services and services["outreach"] == "acme-leadstream-outreach"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    # The ServiceMonitor's targets (so their `up` too) carry their release; another application's carry none.
    down = [
        (f"10.0.1.{i}:9090", "leadstream", name, service, "acme")
        for i, (service, name) in enumerate(sorted(services.items()))
    ]
    quiet = [
        ("10.0.2.1:9090", "leadstream", "leadstream-video", "video", "leadstream"),  # the default release's video
        ("10.0.2.2:9090", "leadstream", "other-leadstream-outreach", "outreach", "other"),  # another release, same ns
        ("10.0.2.3:9090", "staging", "acme-leadstream-outreach", "outreach", "acme"),  # the same release name elsewhere
        ("10.0.2.4:9090", "tools", "console", "console", ""),  # another application's job named like a service
    ]
    series = [
        {
            "series": f'up{{namespace="{ns}", service="{svc}", job="{job}", instance="{inst}"'
            + (f', release="{release}"}}' if release else "}"),
            "values": "0x10",
        }
        for inst, ns, svc, job, release in down + quiet
    ]
    alerts = [
        {
            "exp_labels": {
                "severity": "critical",
                "namespace": ns,
                "release": release,
                "service": svc,
                "job": job,
                "instance": inst,
            },
            "exp_annotations": {
                # What is down, then where: the release and the namespace.
                "summary": f"{job} ({inst}) of release {release} in namespace {ns} does not answer /metrics",
                "description": f"The {job} process of release {release} in namespace {ns} is down, restarting, or "
                "unreachable from Prometheus.",
                "runbook_url": "https://wiki.example.com/leadstream/operations#leadstreamdown",
            },
        }
        for inst, ns, svc, job, release in down
    ]
    unit = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                # Past the rule's `for: 5m`: every one of this release's services, nothing else.
                "alert_rule_test": [{"eval_time": "6m", "alertname": "LeadstreamDown", "exp_alerts": alerts}],
            }
        ],
    }
    test_file = tmp_path / "down-test.yaml"
    test_file.write_text(yaml.safe_dump(unit))
    result = subprocess.run(
        [str(chart.tools.promtool), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


PER_SERVICE_KINDS = (
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "KafkaUser",
    "ScaledObject",
    "HorizontalPodAutoscaler",
)


def test_every_per_service_template_follows_the_one_list_of_enabled_services(chart: Chart, tmp_path: Path) -> None:
    """Only leadstream.enabledServices reads `services.*.enabled`: every per-service template iterates it, so a
    disabled service (or a new one) leaves or joins every resource at once, LeadstreamDown and the notes included."""
    templates = sorted((CHART_DIR / "templates").glob("*"))
    for path in templates:
        text = path.read_text()
        if path.name == "_helpers.tpl":
            # The helper itself is the one loop over the services' values.
            assert text.count("range $name, $_ := .Values.services") == 1, path.name
            continue
        assert ".Values.services" not in text, f"{path.name} ranges over the services itself"
        assert "$svc.enabled" not in text and "$c.enabled" not in text, f"{path.name} tests `enabled` inline"
    # Rendered: with messaging off and a new service on, each kind covers exactly the enabled services.
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "messaging": {"enabled": False},
                    # The console calls messaging when it is on; without it, it must not (see the test below).
                    "console": {"calls": ["projection", "outreach", "discovery"]},
                    "audit": {
                        "kafka": {"consumes": ["leadstream.lead.v1"], "produces": []},
                        "ingress": {"enabled": True},
                    },
                },
            }
        )
    )
    result = chart.helm("-f", str(values_file("production")), "-f", str(extra))
    assert result.returncode == 0, result.stderr
    docs = load_yaml_docs(result.stdout)
    enabled = (set(SERVICES) - {"messaging"}) | {"audit"}
    assert set(by_component(docs, "Deployment")) == enabled
    for kind in PER_SERVICE_KINDS:
        components = set(by_component(docs, kind)) - {"dlq", "migrate", "topics", "replay"}
        autoscaled = {"ScaledObject", "HorizontalPodAutoscaler"}
        if kind in autoscaled:
            assert components <= enabled, kind
        else:
            assert components == enabled - ({"console"} if kind == "KafkaUser" else set()), kind
    (ingress,) = of_kind(docs, "Ingress")
    hosts = {r["host"].split(".", 1)[0] for r in ingress["spec"]["rules"]}
    assert "audit" in hosts and "messaging" not in hosts
    # Nobody is let in from the disabled service (the console calls messaging when it is on).
    for policy in _service_policies(docs).values():
        callers = [
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for rule in policy["spec"]["ingress"]
            for peer in rule.get("from", [])
            if "podSelector" in peer
        ]
        assert "messaging" not in callers
    (rule_object,) = of_kind(docs, "PrometheusRule")
    (down,) = [r for g in rule_object["spec"]["groups"] for r in g["rules"] if r.get("alert") == "LeadstreamDown"]
    watched = re.search(r'service=~"([^"]*)"', down["expr"])
    assert watched and set(watched.group(1).split("|")) == {f"leadstream-{name}" for name in enabled}


def test_a_call_to_a_service_that_is_not_enabled_refuses_to_render(chart: Chart) -> None:
    """`services.<name>.calls` naming a disabled service would give the console a URL of, and a NetworkPolicy rule
    towards, a Service that does not exist, and its pages would call that part "temporarily unavailable" for ever (it
    has no state for a backend that is switched off): render refuses, naming both services. A service taken out of
    the calls gets no URL and no rule; a disabled caller's calls are not its concern."""
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    production = ("-f", str(values_file("production")))
    refused = chart.helm(*production, "--set", "services.messaging.enabled=false")
    assert refused.returncode != 0
    assert (
        "services.console.calls names messaging, which is disabled (services.messaging.enabled=false): enable "
        "messaging, or remove it from services.console.calls" in refused.stderr
    ), refused.stderr
    unknown = chart.helm(*production, "--set", "services.console.calls={projection,outreach,projecton}")
    assert unknown.returncode != 0
    assert "services.console.calls names projecton, which is not a service of this chart" in unknown.stderr
    without = ("services.messaging.enabled=false", "services.console.calls={projection,outreach,discovery}")
    docs = rendered(chart, "production", *without)
    assert "messaging" not in by_component(docs, "Service")
    console = by_component(docs, "Deployment")["console"]
    urls = {
        e["name"]: e["value"]
        for e in console["spec"]["template"]["spec"]["containers"][0]["env"]
        if re.fullmatch(r"LEADSTREAM_CONSOLE_\w+_URL", e["name"])
    }
    assert urls == {
        f"LEADSTREAM_CONSOLE_{name.upper()}_URL": f"http://leadstream-{name}:8080"
        for name in ("projection", "outreach", "discovery")
    }
    called = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in _service_policies(docs)["console"]["spec"]["egress"]
        for peer in rule.get("to", [])
        if "podSelector" in peer and "app.kubernetes.io/component" in peer["podSelector"].get("matchLabels", {})
    ]
    assert called == ["projection", "outreach", "discovery"]
    both_off = rendered(chart, "production", "services.messaging.enabled=false", "services.console.enabled=false")
    assert {"console", "messaging"}.isdisjoint(by_component(both_off, "Deployment"))


def _scoped_series(alert: str, release: str, namespace: str, hot: bool) -> list[dict[str, str]]:
    """Input series for one alert as the ServiceMonitor scrapes them from `release` (its `release` target label,
    the metrics' own `service`): over the alert's threshold when `hot`, healthy otherwise."""
    target = f'namespace="{namespace}", release="{release}", instance="{release}-{alert}:9090"'
    svc = f'service="{{}}", job="{{}}", {target}'.format
    if alert == "LeadstreamDeadLetters":
        return [
            {
                "series": f'leadstream_dlq_total{{{svc("enrichment", "enrichment")}, topic="leadstream.lead.v1", '
                'code="handler_error"}',
                "values": "0+1x20" if hot else "5x20",
            }
        ]
    if alert == "LeadstreamConsumerLagHigh":
        return [
            {
                "series": f'leadstream_consumer_lag{{{svc("projection", "projection")}, topic="leadstream.lead.v1", '
                'partition="0"}',
                "values": "1500x30" if hot else "10x30",
            }
        ]
    if alert == "LeadstreamOutboxBacklog":
        return [
            {
                "series": f"leadstream_outbox_backlog{{{svc('outreach', 'outreach')}}}",
                "values": "800x30" if hot else "0x30",
            }
        ]
    if alert == "LeadstreamOutboxParked":
        return [
            {
                "series": f"leadstream_outbox_parked{{{svc('discovery', 'discovery')}}}",
                "values": "3x30" if hot else "0x30",
            }
        ]
    if alert == "LeadstreamNotReady":
        return [
            {"series": f"leadstream_ready{{{svc('projection', 'projection')}}}", "values": "0x30" if hot else "1x30"}
        ]
    if alert == "LeadstreamSendFailures":
        # No `service` of its own: the target's, the Kubernetes Service's name.
        sends = svc(f"{release}-leadstream-outreach", "outreach") + ', account="a1", action="invite"'
        return [
            {"series": f'leadstream_sends_total{{{sends}, outcome="failed"}}', "values": "0+5x40" if hot else "0x40"},
            {"series": f'leadstream_sends_total{{{sends}, outcome="sent"}}', "values": "0+5x40" if hot else "0+10x40"},
        ]
    assert alert == "LeadstreamHttpErrors", alert
    http = svc("outreach", "outreach") + ', route="/v1/campaigns", method="POST"'
    return [
        {"series": f'leadstream_http_requests_total{{{http}, status="500"}}', "values": "0+5x40" if hot else "0x40"},
        {"series": f'leadstream_http_requests_total{{{http}, status="201"}}', "values": "0+5x40" if hot else "0+10x40"},
    ]


# The labels each alert keeps (with severity): the groups of its expression.
_ALERT_LABELS = {
    "LeadstreamDeadLetters": {"service": "enrichment", "topic": "leadstream.lead.v1", "code": "handler_error"},
    "LeadstreamConsumerLagHigh": {"service": "projection", "topic": "leadstream.lead.v1"},
    "LeadstreamOutboxBacklog": {"service": "outreach"},
    "LeadstreamOutboxParked": {"service": "discovery"},
    "LeadstreamNotReady": {"service": "projection"},
    "LeadstreamSendFailures": {"action": "invite"},
    "LeadstreamHttpErrors": {"service": "outreach"},
}


def test_every_alert_says_which_release_and_namespace_in_its_summary_and_description() -> None:
    """Every alert of the rules file names the release and the namespace its series carry, in the same words in
    its summary and its description (an operator with two releases in a namespace may read either alone), and each
    is among those whose rendered annotations promtool checks below (LeadstreamDown in the test above)."""
    release = "{{ with $labels.release }} of release {{ . }}{{ end }}"
    namespace = "{{ with $labels.namespace }} in namespace {{ . }}{{ end }}"
    where = release + namespace
    rules = yaml.safe_load((CHART_DIR / "files" / "prometheus-rules.yaml").read_text())["groups"]
    alerts = {r["alert"]: r["annotations"] for g in rules for r in g["rules"]}
    assert set(alerts) == set(_ALERT_LABELS) | {"LeadstreamDown"}
    for alert, texts in alerts.items():
        for key in ("summary", "description"):
            assert texts[key].count(where) == 1, (alert, key, texts[key])


def test_each_release_alerts_on_its_own_series_only(chart: Chart, tmp_path: Path) -> None:
    """Two releases in one namespace: the ServiceMonitor labels each target with its release, every alert selects
    its own release's series in its own namespace and groups by release, so each alert fires once, for the release
    whose series crossed the threshold, never for the other (nor for the same release name in another namespace)."""
    if chart.offline or chart.tools.promtool is None:
        pytest.fail(f"helm and promtool are needed ({chart.tools.reason or 'promtool not built'})")
    releases = ("acme", "beta")
    rule_files = []
    for release in releases:
        result = chart.helm("-f", str(values_file("production")), release=release)
        assert result.returncode == 0, result.stderr
        docs = load_yaml_docs(result.stdout)
        # The `release` target label is the Service's app.kubernetes.io/instance: this release's name.
        (monitor,) = of_kind(docs, "ServiceMonitor")
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["honorLabels"] is True
        assert {
            "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
            "targetLabel": "release",
        } in endpoint["relabelings"]
        assert {s["metadata"]["labels"]["app.kubernetes.io/instance"] for s in of_kind(docs, "Service")} == {release}
        (rule_object,) = of_kind(docs, "PrometheusRule")
        groups = rule_object["spec"]["groups"]
        for group in groups:
            for rule in group["rules"]:
                # The labels, the summary and the description, which name the release and namespace, are under
                # test here.
                rule["annotations"] = {k: rule["annotations"][k] for k in ("summary", "description")}
                if rule["alert"] != "LeadstreamDown":
                    # Every selector of a metric is this release's, in this namespace.
                    for metric, matchers in re.findall(r"\b(leadstream_\w+)(\{[^}]*\})?", rule["expr"]):
                        scope = f'{{namespace="leadstream", release="{release}"'
                        assert matchers.startswith(scope), (rule["alert"], metric, matchers)
        path = tmp_path / f"{release}.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        rule_files.append(str(path))
    tests = []
    for hot in releases:
        series = []
        for alert in _ALERT_LABELS:
            for release in releases:
                series += _scoped_series(alert, release, "leadstream", hot=release == hot)
            # The cold release's name in another namespace, over the threshold: not this namespace's.
            cold = next(r for r in releases if r != hot)
            series += _scoped_series(alert, cold, "staging", hot=True)
        tests.append(
            {
                "interval": "1m",
                "input_series": series,
                # Past every alert's `for` (15 minutes at most) and within the dead letters' window.
                "alert_rule_test": [
                    {
                        "eval_time": "17m",
                        "alertname": alert,
                        "exp_alerts": [
                            {
                                "exp_labels": _expected_labels(alert, hot),
                                "exp_annotations": {
                                    "summary": _expected_summary(alert, hot, "leadstream"),
                                    "description": _expected_description(alert, hot, "leadstream"),
                                },
                            }
                        ],
                    }
                    for alert in _ALERT_LABELS
                ],
            }
        )
    unit = tmp_path / "releases-test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run(
        [str(chart.tools.promtool), "test", "rules", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _expected_summary(alert: str, release: str, namespace: str) -> str:
    """The summary of `alert` firing on `_scoped_series(alert, release, namespace, hot=True)` at 17 minutes: it names
    what the alert is about, then the release and the namespace."""
    where = f"of release {release} in namespace {namespace}"
    return {
        "LeadstreamDeadLetters": f"enrichment {where} dead-lettered records from leadstream.lead.v1 (handler_error)",
        "LeadstreamConsumerLagHigh": f"projection {where} is 1.5k records behind on leadstream.lead.v1",
        "LeadstreamOutboxBacklog": f"outreach {where} has 800 events waiting in its outbox",
        "LeadstreamOutboxParked": f"discovery {where} has 3 parked outbox rows",
        "LeadstreamNotReady": f"projection ({release}-LeadstreamNotReady:9090) {where} has reported not-ready for 10 "
        "minutes",
        "LeadstreamSendFailures": f"50% of invite sends {where} fail",
        "LeadstreamHttpErrors": f"outreach {where}: 50% of its HTTP requests fail with 5xx",
    }[alert]


def _expected_description(alert: str, release: str, namespace: str) -> str:
    """The description of `alert` firing on `_scoped_series(alert, release, namespace, hot=True)` at 17 minutes: it
    names the release and the namespace with the summary's words, so two releases' alerts read apart."""
    where = f"of release {release} in namespace {namespace}"
    return {
        "LeadstreamDeadLetters": f"In 15 minutes enrichment {where} dead-lettered 15 record(s): poison events or a "
        "handler that keeps failing.",
        "LeadstreamConsumerLagHigh": f"The consumer group of projection {where} has been over 1000 records behind for "
        "15 minutes.",
        "LeadstreamOutboxBacklog": f"Committed events of outreach {where} are not reaching Kafka: the relay is failing "
        "or too slow.",
        "LeadstreamOutboxParked": f"Rows the broker refused are parked in the outbox of discovery {where} and will not "
        "be published without an operator.",
        "LeadstreamNotReady": f"/readyz of projection {where} fails: Kafka or Postgres unreachable, the consumer not "
        "consuming, or (projection) catching up.",
        "LeadstreamSendFailures": f"More than 20% of the invite provider calls {where} failed over 15 minutes.",
        "LeadstreamHttpErrors": f"More than 5% server errors from outreach {where} over 10 minutes.",
    }[alert]


def _expected_labels(alert: str, release: str) -> dict[str, str]:
    """The labels of `alert` firing for `release` in namespace leadstream: its severity in the shared rules file,
    the release and the groups of its expression (a not-ready pod's instance too)."""
    rules = yaml.safe_load((CHART_DIR / "files" / "prometheus-rules.yaml").read_text())["groups"]
    (severity,) = [r["labels"]["severity"] for g in rules for r in g["rules"] if r["alert"] == alert]
    labels = {"severity": str(severity), "namespace": "leadstream", "release": release, **_ALERT_LABELS[alert]}
    if alert == "LeadstreamNotReady":
        labels["instance"] = f"{release}-{alert}:9090"
    return labels


def test_the_notes_exec_into_a_service_that_has_pods(chart: Chart, tmp_path: Path) -> None:
    """The token and dead-letter commands `kubectl exec` into a Deployment that exists and has pods: outreach (the
    tokens) and the first Kafka service (the dead letters) while they run, another running service when they are
    scaled to zero or disabled (the dead letters' one uses Kafka), and no command at all when nothing runs."""
    if chart.offline:
        pytest.fail(f"helm is needed ({chart.tools.reason})")
    dlq = ("strimzi.enabled=true", "strimzi.kafkaUsers.dlq.enabled=true")
    zero_all = tuple(f"services.{name}.replicas=0" for name in SERVICES)
    cases: list[tuple[tuple[str, ...], str | None, str | None]] = [
        ((), "outreach", "discovery"),
        (("services.outreach.replicas=0", "services.discovery.replicas=0"), "console", "enrichment"),
        (
            (
                "services.outreach.enabled=false",
                "services.discovery.enabled=false",
                "services.console.calls={projection,messaging}",
            ),
            "console",
            "enrichment",
        ),
        # Autoscaled: the Deployment has no replicas of its own, and at least minReplicas (>= 1) pods.
        (
            (
                "services.outreach.replicas=0",
                "services.outreach.autoscaling.enabled=true",
                "services.outreach.autoscaling.type=hpa",
            ),
            "outreach",
            "discovery",
        ),
        # Only the console runs: it has the database settings, but no Kafka ones.
        (tuple(s for s in zero_all if "console" not in s), "console", None),
        (zero_all, None, None),
    ]
    for i, (sets, tokens_via, dlq_via) in enumerate(cases):
        notes = render_notes(chart, tmp_path / str(i), *dlq, *sets)
        docs = rendered(chart, "default", *dlq, *sets)
        # An autoscaled Deployment has no replicas of its own: its autoscaler keeps at least minReplicas (>= 1).
        running = {d["metadata"]["name"] for d in of_kind(docs, "Deployment") if d["spec"].get("replicas", 1) > 0}
        execs = re.findall(r"exec (?:-i )?deploy/(\S+) -- (?:leadstream (\w+)|sh -c .*exec leadstream (\w+))", notes)
        targets = {(command or script): deploy for deploy, command, script in execs}
        assert targets.get("tokens") == (f"leadstream-{tokens_via}" if tokens_via else None), (sets, notes)
        assert targets.get("dlq") == (f"leadstream-{dlq_via}" if dlq_via else None), (sets, notes)
        assert set(targets.values()) <= running, (sets, targets)
        if tokens_via is None:
            assert "no enabled service has pods to run `leadstream tokens create` in" in notes
        if dlq_via is None:
            assert "pod of a service that uses Kafka; none has pods" in notes
