"""The deploy/local scripts recognise the servers they started, wherever they run from.

``kafka.sh`` tells its broker by the end of its command line (the properties file in its state folder). ``ps`` cut
that line at 80 columns when it ran under pytest: a second ``start`` (a test session's ``infra.sh up`` while the
broker ran) took the broker for someone else's, removed its pid file and failed on the port, and every later
``make demo`` or ``make test`` failed the same way until the broker was killed by hand.
"""

from __future__ import annotations

from tests.support.servers import DedicatedServers


async def test_a_second_start_finds_the_running_broker_and_keeps_its_pid_file(
    dedicated_servers: DedicatedServers,
) -> None:
    kafka = dedicated_servers.kafka
    pid = kafka.pid()
    assert pid is not None
    await kafka.start()  # raises with the script's log when it fails ("port ... is already in use")
    assert kafka.pid() == pid
    assert f"already running (pid {pid}" in kafka.log_tail()
