"""leadstream_cli/processes.py: ports for the servers we start."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from leadstream_cli.processes import PORT_BASE, PORT_SLICE, free_port, free_port_block
from services.runtime.settings import METRICS_PORT_OFFSET
from tests.support.kafka import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_free_ports_come_from_the_workers_slice_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    low = PORT_BASE + 2 * PORT_SLICE
    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == len(ports)  # never handed out twice
    assert all(low <= p < low + METRICS_PORT_OFFSET for p in ports), ports
    # A service on one of them puts /metrics on port + METRICS_PORT_OFFSET: still this worker's slice, and no other
    # port handed out is one of those companions.
    companions = {p + METRICS_PORT_OFFSET for p in ports}
    assert all(low + METRICS_PORT_OFFSET <= c < low + PORT_SLICE for c in companions)
    assert not companions & {free_port() for _ in range(40)}
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        assert max(ports) < int(f.read().split()[0])  # no outgoing connection can hold one
    with socket.socket() as s:  # a port something listens on is never chosen
        s.bind(("127.0.0.1", ports[-1] + 1))
        s.listen()
        taken = s.getsockname()[1]
        assert taken not in [free_port() for _ in range(60)]


# The child waits for a signal (signal.pause, no timer): only the SIGTERM its parent's death sends ends it.
PARENT = """
import subprocess, sys
from leadstream_cli.processes import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"], start_new_session=True,
                         stdout=subprocess.DEVNULL, preexec_fn=die_with_parent())
print(child.pid, flush=True)
child.wait()
"""


async def test_a_child_stops_when_the_process_that_started_it_is_killed() -> None:
    # As a SIGKILLed demo or test run: its services (own sessions) must not outlive it.
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", PARENT, stdout=subprocess.PIPE, cwd=ROOT)
    assert parent.stdout is not None
    child = int(await parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    await parent.wait()
    assert await wait_for(lambda: not _alive(child), timeout_s=30, what="the orphan stopped")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has stopped (its new parent reaps it)


def test_a_block_of_ports_is_consecutive_free_and_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    first = free_port_block(8)
    block = set(range(first, first + 8))
    assert PORT_BASE + PORT_SLICE <= first and first + 8 + METRICS_PORT_OFFSET <= PORT_BASE + 2 * PORT_SLICE
    assert not block & {free_port() for _ in range(30)}
