"""A Kafka broker and a PostgreSQL server of a test's own, to kill and restart: the outage tests' servers.

They are started with the project's own scripts (deploy/local/kafka.sh and postgres.sh) on free ports,
with their state in a temporary folder (``LEADSTREAM_RUN_DIR``), so the shared servers every other test
uses are never touched. Everything here acts on the PIDs these servers wrote at start: a kill is a
SIGKILL to them (a crash: no shutdown code runs), a stop is the scripts' own stop of that PID.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from leadstream_cli.processes import free_port
from tests.support.kafka import wait_for
from tests.support.processes import child_pids

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer exists at all (reaped: a server checks its lock file's PID the same way)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@dataclass
class Killed:
    """What a kill did: which PIDs died and when (monotonic time)."""

    pids: list[int]
    at: float


@dataclass
class LocalServer:
    """One server run by a deploy/local script, with its state under ``run_dir``."""

    script: str
    run_dir: Path
    env: dict[str, str]
    log: Path
    starts: list[float] = field(default_factory=list)
    """How long each start took (seconds), the first included."""

    async def _script(self, action: str, timeout_s: float = 180) -> str:
        with self.log.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                "bash",
                str(LOCAL / self.script),
                action,
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
        if proc.returncode != 0:
            raise AssertionError(f"{self.script} {action} failed ({proc.returncode}):\n{self.log_tail()}")
        return out.decode()

    async def start(self) -> None:
        """Start (or restart after a kill, on the same data and port); returns once the server answers."""
        started = time.monotonic()
        await self._script("start")
        self.starts.append(time.monotonic() - started)

    async def stop(self) -> None:
        """The script's clean stop of the PID it started."""
        await self._script("stop")

    def pid(self) -> int | None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The server's processes: its main PID and the children it forked."""
        pid = self.pid()
        return [] if pid is None else [pid, *child_pids(pid)]

    async def kill(self, timeout_s: float = 30) -> Killed:
        """SIGKILL every process of the server at once (a crash) and wait until the PIDs are gone."""
        pids = self.pids()
        assert pids, f"{self.script}: no server running to kill"
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        at = time.monotonic()
        await wait_for(
            lambda: all(_gone(p) for p in pids),
            timeout_s=timeout_s,
            interval_s=0.05,
            what=f"{self.script}: killed PIDs {pids} to be gone",
        )
        return Killed(pids, at)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class DedicatedKafka(LocalServer):
    """A single-node KRaft broker of the test's own (deploy/local/kafka.sh)."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        env = {
            **env,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
        }
        super().__init__("kafka.sh", run_dir, env, run_dir / "kafka-script.log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        path = self.run_dir / "kafka" / "kafka.pid"
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text.isdigit() and not _gone(int(text)) else None

    def server_log_tail(self, lines: int = 40) -> str:
        path = self.run_dir / "kafka" / "kafka.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class DedicatedPostgres(LocalServer):
    """A PostgreSQL server with its own data directory (deploy/local/postgres.sh with PG_MODE=initdb)."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        env = {**env, "PG_MODE": "initdb", "PGPORT_LEADSTREAM": str(self.port)}
        env.pop("DATABASE_URL", None)  # set, it would make the script use that server instead
        super().__init__("postgres.sh", run_dir, env, run_dir / "postgres-script.log")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://leadstream:leadstream@127.0.0.1:{self.port}/leadstream"

    def pid(self) -> int | None:
        path = self.run_dir / "postgres" / "data" / "postmaster.pid"
        first = path.read_text().split("\n", 1)[0].strip() if path.exists() else ""
        return int(first) if first.isdigit() and not _gone(int(first)) else None


@dataclass
class DedicatedServers:
    """A broker and a database for outage tests; :meth:`up` makes sure both run (a failed test may leave
    one down)."""

    run_dir: Path
    kafka: DedicatedKafka
    postgres: DedicatedPostgres

    @classmethod
    def create(cls) -> DedicatedServers:
        # Not under pytest's tmp folder: as root the database runs as `postgres`, which must reach its folder.
        run_dir = Path(tempfile.mkdtemp(prefix="leadstream-outage-"))
        run_dir.chmod(0o755)
        env = {**os.environ, "LEADSTREAM_RUN_DIR": str(run_dir)}
        return cls(run_dir, DedicatedKafka(run_dir, env), DedicatedPostgres(run_dir, env))

    async def up(self) -> None:
        if self.postgres.pid() is None:
            await self.postgres.start()
        if self.kafka.pid() is None:
            await self.kafka.start()

    async def down(self) -> None:
        """Stop both (by their PIDs) and delete their state."""
        try:
            for server in (self.kafka, self.postgres):
                try:
                    await server.stop()
                except AssertionError:
                    for pid in server.pids():  # the script could not: the PIDs we started go anyway
                        os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
