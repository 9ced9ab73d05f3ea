"""Where the suite's CPU goes, per test module: the answer to "why is CI slow" on a 2-core machine.

CI runs the suite on two cores that the tests keep busy (about 95 % of the run), so its length follows the CPU the
tests use, not their wall time: a test that waits costs little, a fleet of services started as processes costs
seconds of CPU each. With ``LEADSTREAM_TEST_CPU=<dir>`` every worker appends one line a test to
``<dir>/cpu-<pid>.tsv``: the node id, the worker's own CPU seconds, the CPU seconds of the child processes it
reaped during the test (services, the CLI, Chromium: a module's fleet is counted at its last test, where it is
stopped) and the wall seconds. The broker and Postgres are not counted (their own processes)::

    LEADSTREAM_TEST_CPU=.run/cpu make test
    .venv/bin/python -m tests.support.cpu_report .run/cpu     # modules by CPU, the heaviest first
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import IO

import pytest

ENV = "LEADSTREAM_TEST_CPU"


class CpuReport:
    """The pytest plugin: one line per test (see the module's docstring)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"cpu-{os.getpid()}.tsv"
        self._out: IO[str] | None = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        before, started = os.times(), time.monotonic()
        yield
        after = os.times()
        own = after.user - before.user + after.system - before.system
        children = after.children_user - before.children_user + after.children_system - before.children_system
        if self._out is None:
            self._out = self.path.open("a", buffering=1)
        self._out.write(f"{item.nodeid}\t{own:.2f}\t{children:.2f}\t{time.monotonic() - started:.2f}\n")


def register(config: pytest.Config) -> None:
    """Register :class:`CpuReport` when ``LEADSTREAM_TEST_CPU`` names a folder (tests/conftest.py calls this)."""
    folder = os.environ.get(ENV)
    if folder:
        config.pluginmanager.register(CpuReport(Path(folder)), "leadstream-cpu-report")


def pytest_configure(config: pytest.Config) -> None:
    """As a plugin of its own (``-p tests.support.cpu_report``): :func:`register`."""
    register(config)


def summarize(folder: Path) -> list[tuple[str, float, float, float]]:
    """(module, own CPU s, children's CPU s, wall s) of every module in ``folder``'s files, the most CPU first."""
    own: defaultdict[str, float] = defaultdict(float)
    children: defaultdict[str, float] = defaultdict(float)
    wall: defaultdict[str, float] = defaultdict(float)
    for path in folder.glob("cpu-*.tsv"):
        for line in path.read_text().splitlines():
            node, o, c, w = line.split("\t")
            module = node.split("::", 1)[0]
            own[module] += float(o)
            children[module] += float(c)
            wall[module] += float(w)
    rows = [(m, own[m], children[m], wall[m]) for m in wall]
    return sorted(rows, key=lambda r: -(r[1] + r[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description="The suite's CPU per test module (LEADSTREAM_TEST_CPU's files).")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    rows = summarize(args.folder)
    print(f"{'cpu s':>8} {'own':>7} {'children':>9} {'wall s':>7}  module")
    for module, o, c, w in rows[: args.top]:
        print(f"{o + c:8.1f} {o:7.1f} {c:9.1f} {w:7.1f}  {module}")
    total_own, total_children = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{total_own + total_children:8.1f} {total_own:7.1f} {total_children:9.1f}  all {len(rows)} modules")


if __name__ == "__main__":
    main()
