#!/usr/bin/env bash
# Lint, render and schema-validate the leadstream chart, and check its alert rules, offline.
#
#   deploy/helm/check.sh                 install the tools if missing, then lint + template + kubeconform for every
#                                        ci/*-values.yaml, promtool check rules on the rendered PrometheusRule and
#                                        promtool test rules deploy/prometheus/alerts-test.yaml
#   deploy/helm/check.sh --tools-only    only make sure helm, kubeconform and promtool are installed; print paths
#   deploy/helm/check.sh --out DIR       also keep the rendered manifests in DIR (one file per values file)
#
# Tools go to ${LEADSTREAM_CACHE_DIR:-$HOME/.cache/leadstream}/bin and are built with Go through the Go module proxy
# when missing (promtool only when none is on the PATH, e.g. from Debian's `prometheus` package) (several minutes, once; a lock lets concurrent callers wait for one build). kubeconform's usual
# schema source (GitHub) is not needed: the Kubernetes schemas are generated from the OpenAPI document shipped in
# the k8s.io/cli-runtime Go module (the same Kubernetes API level helm is built against), and the Strimzi
# (KafkaTopic, KafkaUser), KEDA (ScaledObject) and Prometheus Operator (ServiceMonitor, PrometheusRule) schemas
# are vendored in deploy/helm/kubeconform/crds. Every rendered object must find a schema: a skipped object fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="$HERE/leadstream"
CACHE="${LEADSTREAM_CACHE_DIR:-$HOME/.cache/leadstream}"
BIN="$CACHE/bin"
HELM_VERSIONS="${HELM_VERSIONS:-v3.16.4 v3.16.3 v3.17.0}"
KUBECONFORM_VERSIONS="${KUBECONFORM_VERSIONS:-v0.6.7 v0.6.6}"
# Prometheus 3.9.1's Go module version. Its go.mod has exclude directives, which `go install pkg@version` refuses:
# promtool is built inside a throwaway module that requires it.
PROMETHEUS_MODULE="${PROMETHEUS_MODULE:-github.com/prometheus/prometheus@v0.309.1}"
# The Kubernetes API level of the schemas and of helm's default capabilities (helm v3.16 is built on client-go 0.31).
K8S_MINOR=31
CLI_RUNTIME_MODULE="k8s.io/cli-runtime@v0.${K8S_MINOR}.3"
KUBE_VERSION="1.${K8S_MINOR}.0"
SCHEMAS="$CACHE/kubeconform-schemas/${CLI_RUNTIME_MODULE//[@\/]/_}"
CRDS="$HERE/kubeconform/crds"
PYTHON="${PYTHON:-python3}"

tools_only=0
out_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tools-only) tools_only=1 ;;
    --out) out_dir="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '==> %s\n' "$*" >&2; }

need_go() {
  command -v go >/dev/null 2>&1 || {
    echo "go is not installed: install helm $HELM_VERSIONS / kubeconform into $BIN yourself, or install Go" >&2
    exit 1
  }
}

# go install the first version that builds. `nice`: the build is CPU-heavy and must not starve other work.
go_install() {
  local pkg="$1" versions="$2" ldflags_fn="${3:-}" v ldflags
  need_go
  mkdir -p "$BIN"
  for v in $versions; do
    ldflags=""
    [[ -n "$ldflags_fn" ]] && ldflags="$($ldflags_fn "$v")"
    log "go install $pkg@$v (once; takes a few minutes)"
    if GOBIN="$BIN" GOFLAGS=-mod=mod nice -n 10 go install -ldflags "$ldflags" "$pkg@$v"; then
      return 0
    fi
    log "$pkg@$v did not build; trying the next version"
  done
  echo "could not build $pkg (tried: $versions)" >&2
  exit 1
}

# What helm's own Makefile sets: its version, and the Kubernetes version of its default capabilities
# (without these a source build reports v1.20, older than the chart's kubeVersion).
helm_ldflags() {
  printf -- '-s -w -X helm.sh/helm/v3/internal/version.version=%s' "$1"
  printf -- ' -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=%s' "$K8S_MINOR"
  printf -- ' -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=%s' "$K8S_MINOR"
}
kubeconform_ldflags() { printf -- '-s -w'; }

build_promtool() {
  need_go
  local dir="$CACHE/promtool-build"
  mkdir -p "$dir" "$BIN"
  printf 'module leadstream/promtool-build\n\ngo 1.24\n' >"$dir/go.mod"
  log "building promtool from $PROMETHEUS_MODULE (once; takes several minutes)"
  (
    cd "$dir"
    GOFLAGS=-mod=mod go get "${PROMETHEUS_MODULE%@*}/cmd/promtool@${PROMETHEUS_MODULE#*@}"
    GOFLAGS=-mod=mod nice -n 10 go build -ldflags "-s -w" -o "$BIN/promtool.tmp" "${PROMETHEUS_MODULE%@*}/cmd/promtool"
  ) || { echo "could not build promtool from $PROMETHEUS_MODULE" >&2; exit 1; }
  mv "$BIN/promtool.tmp" "$BIN/promtool"
}

ensure_tools() {
  mkdir -p "$BIN"
  # One build at a time (CI starts one early in the background; the tests may ask meanwhile).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$BIN/.build.lock"
    flock 9
  fi
  [[ -x "$BIN/helm" ]] || go_install helm.sh/helm/v3/cmd/helm "$HELM_VERSIONS" helm_ldflags
  [[ -x "$BIN/kubeconform" ]] || go_install github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSIONS" kubeconform_ldflags
  # Debian's promtool (package `prometheus`, what .ci/run installs) serves as well as one built here.
  [[ -x "$BIN/promtool" ]] || command -v promtool >/dev/null 2>&1 || build_promtool
  if command -v flock >/dev/null 2>&1; then flock -u 9; fi
  if [[ -x "$BIN/promtool" ]]; then PROMTOOL="$BIN/promtool"; else PROMTOOL="$(command -v promtool)"; fi
}

ensure_schemas() {
  [[ -f "$SCHEMAS/deployment-apps-v1.json" ]] && return 0
  need_go
  log "generating Kubernetes JSON schemas from $CLI_RUNTIME_MODULE into $SCHEMAS"
  local dir
  dir="$(GOFLAGS=-mod=mod go mod download -json "$CLI_RUNTIME_MODULE" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  "$PYTHON" "$HERE/kubeconform/k8s_schemas.py" --swagger "$dir/artifacts/openapi/swagger.json" --out "$SCHEMAS.tmp"
  rm -rf "$SCHEMAS" && mv "$SCHEMAS.tmp" "$SCHEMAS"
}

ensure_tools
if [[ $tools_only == 1 ]]; then
  echo "helm=$BIN/helm"
  echo "kubeconform=$BIN/kubeconform"
  echo "promtool=$PROMTOOL"
  exit 0
fi
ensure_schemas
echo "schemas=$SCHEMAS"
echo "crds=$CRDS"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
[[ -n "$out_dir" ]] && mkdir -p "$out_dir"

status=0
for values in "$CHART"/ci/*-values.yaml; do
  name="$(basename "$values" .yaml)"
  log "helm lint --strict ($name)"
  "$BIN/helm" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$values" || status=1

  log "helm template ($name)"
  rendered="$work/$name.yaml"
  "$BIN/helm" template leadstream "$CHART" --namespace leadstream --kube-version "$KUBE_VERSION" \
    -f "$values" >"$rendered" || { status=1; continue; }
  [[ -n "$out_dir" ]] && cp "$rendered" "$out_dir/$name.yaml"

  log "kubeconform -strict ($name)"
  report="$work/$name.kubeconform.json"
  if ! "$BIN/kubeconform" -strict -ignore-missing-schemas -summary -output json \
      -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "$CRDS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
      "$rendered" >"$report"; then
    status=1
  fi
  # -ignore-missing-schemas must not hide anything: every kind the chart renders has a schema here.
  "$PYTHON" - "$report" <<'PY' || status=1
import json, sys
report = json.load(open(sys.argv[1]))
summary = report["summary"]
for r in report.get("resources", []):
    print(f"  {r['status']}: {r['kind']}/{r['name']}: {r.get('msg', '')}", file=sys.stderr)
print(f"  valid={summary['valid']} invalid={summary['invalid']} errors={summary['errors']} skipped={summary['skipped']}",
      file=sys.stderr)
sys.exit(0 if summary["valid"] > 0 and not (summary["invalid"] or summary["errors"] or summary["skipped"]) else 1)
PY

  # The alert rules as the cluster gets them: the PrometheusRule's spec is a Prometheus rule file.
  if grep -q '^kind: PrometheusRule' "$rendered"; then
    log "promtool check rules ($name)"
    rules="$work/$name.rules.yaml"
    "$BIN/helm" template leadstream "$CHART" --namespace leadstream --kube-version "$KUBE_VERSION" -f "$values" \
      --show-only templates/prometheusrule.yaml | sed -n '/^spec:/,$p' | tail -n +2 | sed 's/^  //' >"$rules"
    "$PROMTOOL" check rules "$rules" >&2 || status=1
  fi
done

log "promtool test rules (deploy/prometheus/alerts-test.yaml)"
"$PROMTOOL" test rules "$HERE/../prometheus/alerts-test.yaml" >&2 || status=1

if [[ $status == 0 ]]; then log "chart OK"; else log "chart check FAILED"; fi
exit $status
