"""Fixtures of the deployment tests: the chart (rendered with helm when it can be had)."""

from __future__ import annotations

import os
import warnings

import pytest

from tests.deploy.chart import Chart, find_tools


@pytest.fixture(scope="session")
def chart() -> Chart:
    """The Helm chart; offline (sources only) when helm cannot be installed here, with a warning saying so."""
    tools = find_tools()
    if os.environ.get("CI") and not (tools.helm and tools.kubeconform and tools.promtool):
        # CI proves the rendered chart and the rules; it never settles for the source-only checks.
        pytest.fail(f"CI needs helm, kubeconform and promtool: {tools.reason or 'not all were built'}")
    if tools.helm is None:
        warnings.warn(
            f"helm unavailable ({tools.reason}): chart tests check values and template sources, not rendered "
            "manifests; run deploy/helm/check.sh where Go or helm is installed",
            stacklevel=1,
        )
    return Chart(tools)
