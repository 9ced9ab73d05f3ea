"""leadstream_cli/processes.py: ports for the servers we start."""

from __future__ import annotations

import socket

import pytest

from leadstream_cli.processes import PORT_BASE, PORT_SLICE, free_port


def test_free_ports_come_from_the_workers_slice_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    low = PORT_BASE + 2 * PORT_SLICE
    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == len(ports)  # never handed out twice
    assert all(low <= p < low + PORT_SLICE for p in ports), ports
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        assert max(ports) < int(f.read().split()[0])  # no outgoing connection can hold one
    with socket.socket() as s:  # a port something listens on is never chosen
        s.bind(("127.0.0.1", ports[-1] + 1))
        s.listen()
        taken = s.getsockname()[1]
        assert taken not in [free_port() for _ in range(60)]
