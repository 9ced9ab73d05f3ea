"""The Helm chart: values agree with the code, rendered manifests carry what a cluster needs, kubeconform passes.

Rendering uses helm (deploy/helm/check.sh builds it once into the per-user cache). Where helm cannot be had,
the rendered-manifest tests check the template sources instead (see tests/deploy/chart.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from leadstream_schemas import TOPICS

from leadstream_cli.main import SERVICES
from tests.deploy.chart import (
    CHART_DIR,
    CHECK_SH,
    CI_VALUES,
    KUBE_VERSION,
    ROOT,
    Chart,
    Manifest,
    by_component,
    cache_dir,
    container,
    deep_merge,
    of_kind,
    render_notes,
    values_file,
)

# The first test may build helm and kubeconform from source (a few minutes, once per machine).
pytestmark = pytest.mark.timeout(1800)

EVENT_TOPICS = sorted(TOPICS)
ALL_TOPICS = sorted([*EVENT_TOPICS, *(f"{t}.dlq" for t in EVENT_TOPICS)])
SECRET = "leadstream-secrets"  # ci/*-values.yaml


def _env_names(c: Manifest) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- values and schema: hold with or without helm -------------------------------------------------------------


def test_values_list_exactly_the_contract_topics_and_services(chart: Chart) -> None:
    values = chart.values()
    assert values["topics"]["names"] == list(TOPICS), "values.yaml topics drifted from leadstream_schemas.TOPICS"
    assert values["topics"]["partitions"] == {t.partitions for t in TOPICS.values()}.pop()
    assert sorted(values["services"]) == sorted(SERVICES)
    assert values["strimzi"]["enabled"] is False
    assert values["serviceMonitor"]["enabled"] is False


def test_values_run_non_root_with_a_read_only_root_filesystem(chart: Chart) -> None:
    values = chart.values()
    pod, ctr = values["podSecurityContext"], values["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0 and pod["runAsGroup"] > 0
    assert ctr["readOnlyRootFilesystem"] is True
    assert ctr["allowPrivilegeEscalation"] is False
    assert ctr["capabilities"]["drop"] == ["ALL"]


def test_values_hold_no_secrets(chart: Chart) -> None:
    values = chart.values()
    secret_like = re.compile(r"DATABASE_URL|SECRET|API_KEY|PASSWORD|TOKEN", re.I)
    env_maps = [values["config"], values["defaults"]["env"]]
    env_maps += [s.get("env") or {} for s in values["services"].values()]
    leaked = [k for env in env_maps for k in env if secret_like.search(k)]
    assert leaked == [], f"secrets belong in the existing Secret, not in values: {leaked}"
    assert values["existingSecret"] == "", "the Secret's name must be chosen by the installer"


def test_values_schema_accepts_the_defaults_and_every_ci_file_and_rejects_typos() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    ci_files = sorted(CI_VALUES.glob("*-values.yaml"))
    assert len(ci_files) >= 3
    for path in ci_files:
        merged = deep_merge(defaults, yaml.safe_load(path.read_text()))
        assert [e.message for e in validator.iter_errors(merged)] == [], path.name
    typo = deep_merge(defaults, {"services": {"projecton": {"replicas": 2}}, "defaults": {"replica": 2}})
    errors = {e.json_path: e.message for e in validator.iter_errors(typo)}
    # A misspelt service is an entry without the `kafka` block every real one has.
    assert errors.get("$.services.projecton") == "'kafka' is a required property", errors
    assert any("replica" in m for m in errors.values())


# -- rendered manifests ---------------------------------------------------------------------------------------


def test_default_render_has_one_deployment_service_and_pdb_per_service(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("deployments.yaml")
        assert "range $name, $_ := .Values.services" in src
        assert "kind: Deployment" in src and "kind: Service" in src
        assert "kind: PodDisruptionBudget" in chart.template_source("pdb.yaml")
        return
    docs = chart.render("default")
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert sorted(by_component(docs, kind)) == sorted(SERVICES), kind
    assert len(of_kind(docs, "ConfigMap")) == 1
    assert of_kind(docs, "KafkaTopic") == [] and of_kind(docs, "ServiceMonitor") == []


def test_deployments_probe_healthz_and_readyz_on_the_configured_port(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("deployments.yaml")
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert re.search(rf"{probe}:\s+httpGet:\s+path: {path}\s+port: http", src), probe
        return
    docs = chart.render("default")
    config = of_kind(docs, "ConfigMap")[0]["data"]
    assert config["LEADSTREAM_HTTP_HOST"] == "0.0.0.0"
    for name, deployment in by_component(docs, "Deployment").items():
        c = container(deployment)
        assert c["args"] == ["run", name]
        port, metrics = c["ports"]
        assert port["name"] == "http" and str(port["containerPort"]) == config["LEADSTREAM_HTTP_PORT"]
        assert metrics["name"] == "metrics" and str(metrics["containerPort"]) == config["LEADSTREAM_METRICS_PORT"]
        assert config["LEADSTREAM_METRICS_PORT"] != config["LEADSTREAM_HTTP_PORT"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_pods_run_in_production_with_the_internal_metrics_port(chart: Chart) -> None:
    """LEADSTREAM_ENV=production on every pod (the secrets policy holds, /docs is off) unless values say otherwise,
    and the code reads the ConfigMap as meant."""
    from services.runtime.settings import RuntimeSettings

    if chart.offline:
        src = chart.template_source("_helpers.tpl")
        assert '"LEADSTREAM_ENV" .Values.environment' in src and "LEADSTREAM_METRICS_PORT" in src
        return
    for values in ("default", "production"):
        config = of_kind(chart.render(values), "ConfigMap")[0]["data"]
        assert config["LEADSTREAM_ENV"] == "production"
        settings = RuntimeSettings(
            env=config["LEADSTREAM_ENV"],
            metrics_host=config["LEADSTREAM_METRICS_HOST"],
            metrics_port=config["LEADSTREAM_METRICS_PORT"],
            http_port=config["LEADSTREAM_HTTP_PORT"],
        )
        assert settings.env == "production" and settings.docs is False
        assert settings.effective_metrics_port == 9090 and settings.metrics_host == "0.0.0.0"
    production = of_kind(chart.render("production"), "ConfigMap")[0]["data"]
    assert production["LEADSTREAM_FORWARDED_ALLOW_IPS"] == "10.0.0.0/8"
    assert "LEADSTREAM_FORWARDED_ALLOW_IPS" not in of_kind(chart.render("default"), "ConfigMap")[0]["data"]


def test_deployments_read_the_configmap_and_the_existing_secret(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("deployments.yaml")
        assert "configMapRef:" in src and "secretRef:" in src and 'include "leadstream.secretName"' in src
        return
    docs = chart.render("default")
    configmap = of_kind(docs, "ConfigMap")[0]
    assert configmap["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-bootstrap.kafka.svc:9092"
    assert configmap["data"]["LEADSTREAM_TOPIC_PARTITIONS"] == "6"
    assert not [k for k in configmap["data"] if k == "DATABASE_URL" or "SECRET" in k or k.endswith("_API_KEY")]
    assert of_kind(docs, "Secret") == [], "the chart must never render a Secret"
    for deployment in of_kind(docs, "Deployment"):
        env_from = container(deployment)["envFrom"]
        # Later sources win: the Secret overrides the ConfigMap on a clash.
        assert env_from == [
            {"configMapRef": {"name": configmap["metadata"]["name"]}},
            {"secretRef": {"name": SECRET}},
        ]


def test_every_pod_runs_non_root_read_only_with_a_writable_tmp(chart: Chart) -> None:
    if chart.offline:
        for name in ("deployments.yaml", "hook-jobs.yaml"):
            src = chart.template_source(name)
            assert "podSecurityContext" in src and ".Values.securityContext" in src, name
            assert "leadstream.baseVolumeMounts" in src, name
        return
    docs = chart.render("default")
    workloads = of_kind(docs, "Deployment") + of_kind(docs, "Job")
    assert len(workloads) == len(SERVICES) + 2
    production = chart.render("production")
    workloads += of_kind(production, "Deployment") + of_kind(production, "Job")
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False
        sc = container(w)["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container(w)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]


def test_migrate_and_topics_run_as_pre_install_and_pre_upgrade_hooks(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("hook-jobs.yaml")
        assert "helm.sh/hook: pre-install,pre-upgrade" in src
        assert '(list "migrate")' in src and 'list "topics" "apply"' in src
        assert 'append $topicsArgs "--allow-partition-increase"' in src
        return
    docs = chart.render("default")
    jobs = by_component(docs, "Job")
    assert sorted(jobs) == ["migrate", "topics"]
    assert container(jobs["migrate"])["args"] == ["migrate"]
    assert container(jobs["topics"])["args"] == ["topics", "apply"]
    weights = {}
    for name, job in jobs.items():
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        weights[name] = int(annotations["helm.sh/hook-weight"])
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        c = container(job)
        # Pre-install hooks run before the chart's ConfigMap exists: the shared settings must be inline.
        assert [s for s in c["envFrom"] if "configMapRef" in s] == []
        assert c["envFrom"] == [{"secretRef": {"name": SECRET}}]
        env = _env_names(c)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-bootstrap.kafka.svc:9092"
        assert env["LEADSTREAM_TOPIC_PARTITIONS"] == "6" and env["LEADSTREAM_TOPIC_REPLICATION_FACTOR"] == "3"
    assert weights["topics"] < weights["migrate"]
    allowed = by_component(chart.render("default", "topicsJob.allowPartitionIncrease=true"), "Job")
    assert container(allowed["topics"])["args"] == ["topics", "apply", "--allow-partition-increase"]


def test_strimzi_renders_a_kafkatopic_per_topic_and_dlq_that_keeps_data_forever(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("kafkatopics.yaml")
        assert "kind: KafkaTopic" in src and '"retention.ms" -1' in src and '"%s.dlq"' in src
        assert chart.values()["topics"]["names"] == list(TOPICS)
        return
    docs = chart.render("strimzi")
    topics = of_kind(docs, "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in topics) == ALL_TOPICS
    for t in topics:
        assert t["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == "events"
        assert t["metadata"]["namespace"] == "leadstream"
        # Deleting a KafkaTopic deletes the topic's data: uninstall must leave them.
        assert t["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert t["spec"]["partitions"] == 6 and t["spec"]["replicas"] == 3
        assert t["spec"]["config"]["retention.ms"] == -1
        assert t["spec"]["config"]["min.insync.replicas"] == "2"
    # Strimzi owns the topics: no topics Job, but migrations still run.
    assert sorted(by_component(docs, "Job")) == ["migrate"]
    bootstrap = of_kind(docs, "ConfigMap")[0]["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap == "events-kafka-bootstrap.leadstream.svc:9092"


def test_topic_prefix_reaches_kafkatopics_and_services(chart: Chart) -> None:
    if chart.offline:
        assert "$.Values.kafka.topicPrefix" in chart.template_source("kafkatopics.yaml")
        assert "LEADSTREAM_TOPIC_PREFIX" in chart.template_source("_helpers.tpl")
        return
    docs = chart.render("strimzi", "kafka.topicPrefix=staging.")
    assert sorted(t["spec"]["topicName"] for t in of_kind(docs, "KafkaTopic")) == [f"staging.{t}" for t in ALL_TOPICS]
    assert of_kind(docs, "ConfigMap")[0]["data"]["LEADSTREAM_TOPIC_PREFIX"] == "staging."


def test_the_console_reaches_the_services_it_reads_through_their_cluster_services(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("deployments.yaml")
        assert "LEADSTREAM_CONSOLE_%s_URL" in src and '"console"' in src
        return
    docs = chart.render("default")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    console = by_component(docs, "Deployment")["console"]
    env = _env_names(container(console))
    for name in ("projection", "outreach", "messaging", "discovery"):
        url = env[f"LEADSTREAM_CONSOLE_{name.upper()}_URL"]
        host, port = url.removeprefix("http://").split(":")
        target = services[host]
        assert target["metadata"]["labels"]["app.kubernetes.io/component"] == name
        assert int(port) == target["spec"]["ports"][0]["port"]
    assert "LEADSTREAM_CONSOLE_SESSION_SECRET" not in env, "the session key comes from the Secret, not values"


def test_service_monitor_scrapes_metrics_of_every_service(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("servicemonitor.yaml")
        assert "kind: ServiceMonitor" in src and "path: /metrics" in src and "port: metrics" in src
        return
    docs = chart.render("strimzi")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    # /metrics is on the internal port, not the API's (which the Ingress routes to).
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = of_kind(docs, "Service")
    assert len(services) == len(SERVICES)
    for svc in services:
        assert _matches(selector, svc["metadata"]["labels"]), svc["metadata"]["name"]
        assert [p["name"] for p in svc["spec"]["ports"]] == ["http", "metrics"]


def test_each_service_and_pdb_selects_exactly_its_own_pods(chart: Chart) -> None:
    if chart.offline:
        assert "leadstream.componentSelectorLabels" in chart.template_source("pdb.yaml")
        return
    docs = chart.render("default")
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in by_component(docs, "Deployment").items()}
    for kind, path in (("Service", ("spec", "selector")), ("PodDisruptionBudget", ("spec", "selector", "matchLabels"))):
        for name, obj in by_component(docs, kind).items():
            selector = obj
            for key in path:
                selector = selector[key]
            assert [p for p, labels in pods.items() if _matches(selector, labels)] == [name], (kind, name)
    for name, d in by_component(docs, "Deployment").items():
        assert d["spec"]["selector"]["matchLabels"] == by_component(docs, "Service")[name]["spec"]["selector"]


def test_per_service_overrides_disabled_services_and_scale_to_zero(chart: Chart) -> None:
    if chart.offline:
        assert 'hasKey $svc "replicas"' in chart.template_source("_helpers.tpl")
        assert "$svc.existingSecret" in chart.template_source("deployments.yaml")
        return
    docs = chart.render("overrides")
    deployments = by_component(docs, "Deployment")
    assert "video" not in deployments and "video" not in by_component(docs, "Service")
    assert deployments["projection"]["spec"]["replicas"] == 0
    assert "projection" not in by_component(docs, "PodDisruptionBudget")
    messaging = deployments["messaging"]
    assert messaging["spec"]["replicas"] == 3
    c = container(messaging)
    # Overrides merge into the defaults: cpu from the service, memory from the defaults.
    assert c["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}
    assert c["envFrom"][-1] == {"secretRef": {"name": "leadstream-llm"}}
    env = {e["name"]: e for e in c["env"]}
    assert env["LEADSTREAM_MESSAGING_GENERATOR"]["value"] == "http"
    assert env["LEADSTREAM_LLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
    assert "lifecycle" not in c  # preStopSleepSeconds: 0
    assert c["image"].endswith("@sha256:" + "0" * 64)
    pod = messaging["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "leadstream-workload"
    assert pod["nodeSelector"] == {"workload": "leadstream"}
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert of_kind(docs, "ServiceAccount") == []
    assert by_component(docs, "Job")["migrate"]["spec"]["template"]["spec"]["serviceAccountName"] == (
        "leadstream-workload"
    )
    assert of_kind(docs, "ConfigMap")[0]["data"]["LEADSTREAM_CONSUMER_MAX_ATTEMPTS"] == "7"
    assert {p["spec"]["maxUnavailable"] for p in of_kind(docs, "PodDisruptionBudget")} == {2}


def test_a_config_change_rolls_the_pods(chart: Chart) -> None:
    if chart.offline:
        assert "checksum/config" in chart.template_source("deployments.yaml")
        return

    def checksums(docs: list[Manifest]) -> set[str]:
        pods = [d["spec"]["template"]["metadata"] for d in of_kind(docs, "Deployment")]
        return {p["annotations"]["checksum/config"] for p in pods}

    before = checksums(chart.render("default"))
    after = checksums(chart.render("default", "config.LEADSTREAM_LOG_LEVEL=DEBUG"))
    assert len(before) == 1 and len(after) == 1 and before != after


def test_rendering_without_a_secret_or_kafka_fails_with_a_clear_message(chart: Chart) -> None:
    if chart.offline:
        helpers = chart.template_source("_helpers.tpl")
        assert 'required "existingSecret is required' in helpers and 'required "kafka.bootstrapServers' in helpers
        return
    no_secret = chart.helm("--set", "kafka.bootstrapServers=k:9092")
    assert no_secret.returncode != 0 and "existingSecret is required" in no_secret.stderr
    no_kafka = chart.helm("--set", "existingSecret=s")
    assert no_kafka.returncode != 0 and "kafka.bootstrapServers is required" in no_kafka.stderr


def test_notes_warn_about_replicas_beyond_partitions(chart: Chart, tmp_path: Path) -> None:
    notes = (CHART_DIR / "templates" / "NOTES.txt").read_text()
    if chart.offline:
        assert "will idle" in notes and "gt (int $svc.replicas) (int $.Values.topics.partitions)" in notes
        return
    text = render_notes(chart, tmp_path, "services.projection.replicas=8")
    assert "services.projection.replicas=8 exceeds topics.partitions=6; 2 pod(s) will idle" in text
    assert "services.discovery.replicas" not in text
    assert "leadstream-leadstream-outreach" not in text and "leadstream-outreach" in text


@pytest.fixture(scope="module")
def check_run(chart: Chart) -> subprocess.CompletedProcess[str] | None:
    """One run of deploy/helm/check.sh (lint, template, kubeconform for every ci values file); None offline."""
    if chart.offline or chart.tools.kubeconform is None:
        return None
    schemas_cached = any((cache_dir() / "kubeconform-schemas").glob("*/deployment-apps-v1.json"))
    if not schemas_cached and shutil.which("go") is None:
        return None  # check.sh generates the Kubernetes schemas with Go's module download
    return subprocess.run(["bash", str(CHECK_SH)], capture_output=True, text=True, timeout=600)


def test_lint_template_and_kubeconform_pass_for_every_ci_values_file(
    chart: Chart, check_run: subprocess.CompletedProcess[str] | None
) -> None:
    """check.sh: helm lint --strict, helm template and kubeconform -strict with offline schemas, none left out."""
    if check_run is None:
        _structural_check(chart)
        return
    assert check_run.returncode == 0, check_run.stderr[-4000:]
    summaries = re.findall(r"valid=(\d+) invalid=(\d+) errors=(\d+) skipped=(\d+)", check_run.stderr)
    assert len(summaries) == len(list(CI_VALUES.glob("*-values.yaml")))
    for valid, invalid, errors, missing_schema in summaries:
        assert int(valid) > 0 and (invalid, errors, missing_schema) == ("0", "0", "0")


def test_kubeconform_schemas_reject_a_misplaced_field(
    chart: Chart, check_run: subprocess.CompletedProcess[str] | None, tmp_path: Path
) -> None:
    """The offline schemas are strict: a field that a cluster would reject fails validation."""
    if check_run is None or chart.tools.kubeconform is None:
        _structural_check(chart)
        return
    locations = dict(re.findall(r"^(schemas|crds)=(.+)$", check_run.stdout, re.M))
    docs = chart.render("strimzi")
    deployment = of_kind(docs, "Deployment")[0]
    container(deployment)["readinessProbe"]["periodSecond"] = 5  # typo of periodSeconds
    topic = of_kind(docs, "KafkaTopic")[0]
    topic["spec"]["partitions"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([deployment, topic]))
    k8s_location = locations["schemas"] + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    crd_location = locations["crds"] + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
    result = subprocess.run(
        [
            str(chart.tools.kubeconform),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-schema-location",
            k8s_location,
            "-schema-location",
            crd_location,
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(result.stdout)
    assert result.returncode != 0 and report["summary"]["invalid"] == 2
    messages = " ".join(r["msg"] for r in report["resources"])
    assert "periodSecond" in messages and "partitions" in messages


def _structural_check(chart: Chart) -> None:
    """Without kubeconform: every manifest has the fields any Kubernetes object needs, with the right types."""
    if chart.offline:
        templates = sorted((CHART_DIR / "templates").glob("*.yaml"))
        assert templates
        for t in templates:
            text = t.read_text()
            assert text.count("{{") == text.count("}}"), t.name
        return
    for values in ("default", "strimzi", "overrides", "production"):
        for doc in chart.render(values):
            assert isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str), doc
            name = doc["metadata"]["name"]
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) and len(name) <= 253, name
            if doc["kind"] in ("Deployment", "Job"):
                c = container(doc)
                assert isinstance(c["name"], str) and isinstance(c["image"], str)
                for port in c.get("ports", []):
                    assert isinstance(port["containerPort"], int)


def test_chart_versions_agree_with_the_project_and_the_validation_target() -> None:
    chart_yaml: dict[str, Any] = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    minimum = re.match(r">=\s*1\.(\d+)", chart_yaml["kubeVersion"])
    assert minimum is not None
    assert int(KUBE_VERSION.split(".")[1]) >= int(minimum.group(1))
    # The default image tag is the appVersion: it must name the version the package builds.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart_yaml["appVersion"] == project["version"]


def test_the_replay_job_is_off_by_default_and_an_indexed_job_of_n_workers_when_enabled(chart: Chart) -> None:
    if chart.offline:
        src = chart.template_source("replay-job.yaml")
        assert '"indexed" .workers' in src and '"--if-absent"' in src and '"replay" "worker"' in src
        assert chart.values()["replayJob"]["enabled"] is False
        return
    assert "replay" not in by_component(chart.render("default"), "Job")
    job = by_component(chart.render("overrides"), "Job")["replay"]
    assert job["metadata"]["name"] == "leadstream-replay-last-week-1"
    assert "annotations" not in job["metadata"]  # not a hook: an upgrade does not run or wait for it
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimit"] == 6 and spec["activeDeadlineSeconds"] == 7200
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [start] = pod["initContainers"]
    assert start["args"] == [
        "replay", "start", "--into", "last_week_1", "--workers", "3", "--batch", "10000", "--if-absent",
        "--since", "7d",
    ]  # fmt: skip
    worker = container(job)
    assert worker["args"] == ["replay", "worker", "--rebuild", "last_week_1"]  # the index: JOB_COMPLETION_INDEX
    for c in (start, worker):
        # The migrating user (schema DDL, promotion) is read last, so its DATABASE_URL wins; Kafka is read.
        assert c["envFrom"] == [{"secretRef": {"name": SECRET}}, {"secretRef": {"name": "leadstream-migrator"}}]
        assert _env_names(c)["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
        assert c["resources"]["requests"]["cpu"] == "1000m"
    full = by_component(
        chart.render("default", "replayJob.enabled=true", "replayJob.name=r2", "replayJob.promoteWhenDone=true"), "Job"
    )["replay"]
    assert full["spec"]["completions"] == 2
    assert full["spec"]["template"]["spec"]["initContainers"][0]["args"][-2:] == [
        "--from-beginning",
        "--promote-when-done",
    ]
    # With KafkaUsers it logs in as the projection (Read on what it reads, Write on those topics' .dlq).
    secured = by_component(chart.render("production", "replayJob.enabled=true", "replayJob.name=r3"), "Job")["replay"]
    assert _env_names(container(secured))["LEADSTREAM_KAFKA_SASL_USERNAME"] == "leadstream-projection"
    missing = chart.helm("-f", str(values_file("default")), "--set", "replayJob.enabled=true")
    assert missing.returncode != 0 and "replayJob.name is required" in missing.stderr
