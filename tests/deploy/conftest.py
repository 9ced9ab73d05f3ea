"""Fixtures of the deployment tests: the chart (rendered with helm when it can be had)."""

from __future__ import annotations

import warnings

import pytest

from tests.deploy.chart import Chart, find_tools


@pytest.fixture(scope="session")
def chart() -> Chart:
    """The Helm chart; offline (sources only) when helm cannot be installed here, with a warning saying so."""
    tools = find_tools()
    if tools.helm is None:
        warnings.warn(
            f"helm unavailable ({tools.reason}): chart tests check values and template sources, not rendered "
            "manifests; run deploy/helm/check.sh where Go or helm is installed",
            stacklevel=1,
        )
    return Chart(tools)
