"""The deploy/local scripts recognise the servers they started, wherever they run from.

``kafka.sh`` tells its broker by the end of its command line (the properties file in its state folder). ``ps`` cut
that line at 80 columns when it ran under pytest: a second ``start`` (a test session's ``infra.sh up`` while the
broker ran) took the broker for someone else's, removed its pid file and failed on the port, and every later
``make demo`` or ``make test`` failed the same way until the broker was killed by hand.

It also formats a broker's storage with any cluster id it kept, and makes none that a command line would misread.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from tests.support.servers import LOCAL, DedicatedKafka, DedicatedServers


async def test_a_second_start_finds_the_running_broker_and_keeps_its_pid_file(
    dedicated_servers: DedicatedServers,
) -> None:
    kafka = dedicated_servers.kafka
    pid = kafka.pid()
    assert pid is not None
    await kafka.start()  # raises with the script's log when it fails ("port ... is already in use")
    assert kafka.pid() == pid
    assert f"already running (pid {pid}" in kafka.log_tail()


def test_new_cluster_ids_never_start_with_a_dash() -> None:
    # An id starting with "-" is read as an option by Kafka's storage tool (1 in 64 random ids was): kafka.sh makes
    # none, as Kafka's own Uuid.randomUuid() makes none. 500 ids: the old generator made one with ~99.96 %.
    function = re.search(r"^new_cluster_id\(\) \{\n.*?^\}\n", (LOCAL / "kafka.sh").read_text(), re.S | re.M)
    assert function is not None
    script = f"{function.group()}\nfor i in $(seq 500); do new_cluster_id; done\n"
    ids = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout.split()
    assert len(ids) == 500 and len(set(ids)) == 500
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", cid) and not cid.startswith("-") for cid in ids)


async def test_a_kept_cluster_id_starting_with_a_dash_still_formats_the_storage() -> None:
    # A state folder from before may keep such an id: it is passed as --cluster-id=ID, and the broker runs with it.
    run_dir = Path(tempfile.mkdtemp(prefix="leadstream-cluster-id-"))
    kafka = DedicatedKafka(run_dir, {**os.environ, "LEADSTREAM_RUN_DIR": str(run_dir)})
    try:
        kept = "-" + "Kq3" * 7
        (run_dir / "kafka").mkdir(parents=True)
        (run_dir / "kafka" / "cluster.id").write_text(kept + "\n")
        await kafka.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            assert (await admin.describe_cluster())["cluster_id"] == kept
        finally:
            await admin.close()
    finally:
        try:
            await kafka.stop()
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
