"""``leadstream demo`` stops every service it started on SIGTERM and SIGHUP, as it does on Ctrl-C: a
service manager stopping it, or a closed terminal, leaves no service running on its own.

Runs the real command as a process (services as its child processes) on the real broker and a database
of its own, and checks the operating system's process table afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from functools import partial
from pathlib import Path

import pytest

from leadstream_cli.processes import SERVICES, free_port_block, shutdown_grace_s
from tests.support.infra import Infra
from tests.support.kafka import wait_for
from tests.support.processes import alive, child_pids

pytestmark = pytest.mark.e2e
LEADSTREAM = Path(sys.executable).parent / "leadstream"


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


async def _exit_code(demo: asyncio.subprocess.Process, timeout_s: float, log_path: Path, children: list[int]) -> int:
    """The demo's exit code; past ``timeout_s``, a failure saying where it waits (every thread's stack: the demo
    prints them on SIGUSR1) and which of its services still run."""
    try:
        return await asyncio.wait_for(demo.wait(), timeout=timeout_s)
    except TimeoutError:
        demo.send_signal(signal.SIGUSR1)
        await wait_for(
            lambda: "most recent call first" in log_path.read_text(errors="replace"), timeout_s=10, at_deadline="return"
        )
        running = [pid for pid in children if alive(pid)]
        raise AssertionError(
            f"the demo did not exit {timeout_s:.0f} s after the signal; services still running: {running}\n"
            f"{_tail(log_path)}"
        ) from None


@pytest.mark.parametrize(
    ("sig", "when"),
    [(signal.SIGTERM, "campaign running"), (signal.SIGHUP, "services starting")],
    ids=["SIGTERM-running", "SIGHUP-starting"],
)
async def test_demo_stops_every_service_it_started(
    sig: signal.Signals, when: str, infra: Infra, own_database: str, topic_prefix: str, tmp_path: Path
) -> None:
    base = free_port_block(len(SERVICES))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
        "DATABASE_URL": own_database,
        # Inside the session's prefix, so that its topics go with the session's (a prefix of its own was left on
        # the broker by every run: 48 partitions a run, thousands on a developer's broker).
        "LEADSTREAM_TOPIC_PREFIX": f"{topic_prefix}{uuid.uuid4().hex[:6]}.",
        "LEADSTREAM_TOPIC_PARTITIONS": "3",
        "LEADSTREAM_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        demo = await asyncio.create_subprocess_exec(
            str(LEADSTREAM), "demo", "--port-base", str(base), "--timeout", "300", env=env, stdout=log, stderr=log
        )
    children: list[int] = []
    try:

        def reached(phase: str) -> bool:
            if demo.returncode is not None:
                raise AssertionError(f"the demo ended ({demo.returncode}) before {phase}:\n{_tail(log_path)}")
            if phase == "campaign running":
                return "launched for" in log_path.read_text(errors="replace")
            return len(child_pids(demo.pid)) == len(SERVICES)

        # Generous: on a busy machine every service starting at once takes a while.
        # The demo launches its campaign once every service is ready.
        await wait_for(partial(reached, when), timeout_s=240, interval_s=0.5, what=when)
        children = child_pids(demo.pid)
        assert len(children) == len(SERVICES), children
        assert demo.returncode is None, "the demo ended before the signal"

        demo.send_signal(sig)
        code = await _exit_code(demo, shutdown_grace_s(env) + 30, log_path, children)

        output = _tail(log_path)
        assert code != -sig, f"the demo died of {sig.name} without stopping its services\n{output}"
        survivors = [pid for pid in children if alive(pid)]
        assert survivors == [], f"services left running after {sig.name}: {survivors}\n{output}"
        assert "did not stop cleanly" not in output, output
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
        for pid in children:  # only on failure: never leave the test's own services behind
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
