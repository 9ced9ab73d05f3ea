"""The CPU report plugin: a line per test with the worker's and its children's CPU, summed per module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.cpu_report import summarize

ROOT = Path(__file__).resolve().parents[2]


def test_each_test_is_written_with_the_cpu_of_the_children_it_reaped(tmp_path: Path) -> None:
    tests = tmp_path / "test_burn.py"
    tests.write_text(
        "import subprocess, sys\n"
        "def test_child():\n"
        "    subprocess.run([sys.executable, '-c', 'sum(i * i for i in range(3_000_000))'], check=True)\n"
        "def test_quiet():\n"
        "    assert True\n"
    )
    folder = tmp_path / "cpu"
    env = {**os.environ, "LEADSTREAM_TEST_CPU": str(folder), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.support.cpu_report", str(tests)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    [written] = list(folder.glob("cpu-*.tsv"))
    lines = [line.split("\t") for line in written.read_text().splitlines()]
    assert [line[0].rsplit("::", 1)[1] for line in lines] == ["test_child", "test_quiet"]
    child, quiet = (float(line[2]) for line in lines)
    assert child > 0.05 and quiet == 0.0
    [(module, own, children, wall)] = summarize(folder)
    assert module.endswith("test_burn.py") and children == child and wall > 0 and own >= 0
