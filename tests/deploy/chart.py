"""Render the Helm chart for tests: helm from the per-user cache (built by deploy/helm/check.sh when missing).

When helm cannot be had (no cache, no helm on PATH, no Go to build it), :class:`Chart` is *offline*: tests then
check the chart's sources (values, schema, templates) instead of rendered manifests, and say so in a warning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM_DIR = ROOT / "deploy" / "helm"
CHART_DIR = HELM_DIR / "leadstream"
CHECK_SH = HELM_DIR / "check.sh"
CI_VALUES = CHART_DIR / "ci"
KUBE_VERSION = "1.31.0"
# Building helm, kubeconform and promtool from source takes several minutes once (more on a busy machine); never
# wait forever.
TOOLS_TIMEOUT_S = 1500
Manifest = dict[str, Any]


def cache_dir() -> Path:
    """Where check.sh keeps its tools and schemas."""
    return Path(os.environ.get("LEADSTREAM_CACHE_DIR") or Path.home() / ".cache" / "leadstream")


@dataclass(frozen=True)
class Tools:
    """Paths of helm, kubeconform and promtool, or why they are missing."""

    helm: Path | None
    kubeconform: Path | None
    reason: str = ""
    promtool: Path | None = None


def find_tools() -> Tools:
    """helm, kubeconform and promtool from the cache dir or PATH; built with check.sh (Go) when missing.

    ``LEADSTREAM_DEPLOY_OFFLINE=1`` pretends neither exists, to exercise the offline checks.
    """
    if os.environ.get("LEADSTREAM_DEPLOY_OFFLINE") == "1":
        return Tools(None, None, "LEADSTREAM_DEPLOY_OFFLINE=1")
    bin_dir = cache_dir() / "bin"

    def locate(name: str) -> Path | None:
        cached = bin_dir / name
        if cached.is_file() and os.access(cached, os.X_OK):
            return cached
        found = shutil.which(name)
        return Path(found) if found else None

    helm, kubeconform, promtool = locate("helm"), locate("kubeconform"), locate("promtool")
    if helm and kubeconform and promtool:
        return Tools(helm, kubeconform, promtool=promtool)
    if not shutil.which("go"):
        return Tools(helm, kubeconform, "helm/kubeconform not installed and no Go toolchain to build them")
    try:
        result = subprocess.run(
            ["bash", str(CHECK_SH), "--tools-only"], capture_output=True, text=True, timeout=TOOLS_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return Tools(helm, kubeconform, f"building helm/kubeconform took longer than {TOOLS_TIMEOUT_S}s")
    if result.returncode != 0:
        return Tools(helm, kubeconform, f"check.sh --tools-only failed: {result.stderr[-2000:]}")
    return Tools(locate("helm"), locate("kubeconform"), promtool=locate("promtool"))


def values_file(name: str) -> Path:
    """A values file of the chart's ci/ directory (e.g. ``default`` -> ci/default-values.yaml)."""
    return CI_VALUES / f"{name}-values.yaml"


def load_yaml_docs(text: str) -> list[Manifest]:
    """Every non-empty document of a multi-document YAML stream."""
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass
class Chart:
    """The chart, rendered with helm when it is available."""

    tools: Tools
    _cache: dict[tuple[str, ...], list[Manifest]] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        """True when helm is unavailable and only the sources can be checked."""
        return self.tools.helm is None

    def helm(
        self, *args: str, chart: Path = CHART_DIR, release: str = "leadstream"
    ) -> subprocess.CompletedProcess[str]:
        """Run ``helm template`` on the chart with extra arguments (values files, --set) as release ``release``."""
        assert self.tools.helm is not None, self.tools.reason
        cmd = [str(self.tools.helm), "template", release, str(chart), "--namespace", "leadstream"]
        cmd += ["--kube-version", KUBE_VERSION, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def render(self, values: str = "default", *sets: str) -> list[Manifest]:
        """Manifests rendered with ci/<values>-values.yaml and ``--set`` overrides (cached per arguments)."""
        key = (values, *sets)
        if key not in self._cache:
            args = ["-f", str(values_file(values))]
            for s in sets:
                args += ["--set", s]
            result = self.helm(*args)
            assert result.returncode == 0, result.stderr
            self._cache[key] = load_yaml_docs(result.stdout)
        return self._cache[key]

    def template_source(self, name: str) -> str:
        """The text of one template file."""
        return (CHART_DIR / "templates" / name).read_text()

    def values(self) -> dict[str, Any]:
        """The chart's default values."""
        loaded: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
        return loaded


def of_kind(docs: Iterable[Manifest], kind: str) -> list[Manifest]:
    """The manifests of one kind."""
    return [d for d in docs if d.get("kind") == kind]


def by_component(docs: Iterable[Manifest], kind: str) -> dict[str, Manifest]:
    """Manifests of one kind keyed by their app.kubernetes.io/component label."""
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in of_kind(docs, kind)}


def container(workload: Manifest) -> Manifest:
    """The single container of a Deployment or Job."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, containers
    first: Manifest = containers[0]
    return first


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge recursively, everything else is replaced."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def render_notes(chart: Chart, tmp_path: Path, *sets: str) -> str:
    """NOTES.txt rendered with the default values and ``sets`` (``key=value``): helm renders it only on install
    (which needs a cluster), so here through ``tpl`` in a copy of the chart."""
    copy = tmp_path / "leadstream"
    shutil.copytree(CHART_DIR, copy)
    (copy / "templates" / "NOTES.txt").rename(copy / "NOTES.src")
    (copy / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "NOTES.src") . | quote }}\n'
    )
    args = ["-f", str(values_file("default")), "--show-only", "templates/zz-notes.yaml"]
    for s in sets:
        args += ["--set", s]
    result = chart.helm(*args, chart=copy)
    assert result.returncode == 0, result.stderr
    text: str = load_yaml_docs(result.stdout)[0]["data"]["notes"]
    return text
