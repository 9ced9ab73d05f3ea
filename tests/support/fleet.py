"""Every service as an OS process (leadstream_cli.processes, the one list of services) on chosen servers,
for tests that stop, restart and starve them: readiness as each service reports it, SIGTERM with the
exit code and the time it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from leadstream_cli.processes import SERVICES, ServiceFleet, free_port
from tests.support.kafka import wait_for


@dataclass(frozen=True)
class Stopped:
    """How one service ended after SIGTERM."""

    service: str
    code: int
    seconds: float


class Fleet:
    """``SERVICES`` as processes with ``env`` (servers, topic prefix, clock), on free ports."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.processes = ServiceFleet(env=env, log_dir=log_dir, ports={name: free_port() for name in SERVICES})
        self.services = SERVICES

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.processes.ports[service]}"

    async def start(self, *services: str) -> None:
        """Start these services; returns at once, ready or not."""
        for name in services:
            self.processes.start(name)

    async def wait_ready(self, timeout_s: float = 180) -> None:
        """Until every running service answers ``/readyz`` 200 (raises with the reasons at the deadline)."""
        await asyncio.to_thread(self.processes.wait_ready, timeout_s)

    async def readiness(self, service: str) -> dict[str, Any] | None:
        """``{}`` when ``/readyz`` says ready, the failed checks when not, None when the service does not answer."""
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                r = await http.get(self.url(service) + "/readyz")
        except httpx.TransportError:
            return None
        if r.status_code == 200:
            return {}
        return dict(r.json().get("checks") or {"status": r.status_code})

    async def all_ready(self) -> bool:
        states = await asyncio.gather(*(self.readiness(s) for s in self.processes.procs))
        return all(state == {} for state in states)

    async def terminate(self, service: str) -> Stopped:
        """SIGTERM one service and wait for it to end (SIGKILL past its grace period)."""
        started = time.monotonic()
        code = await asyncio.to_thread(self.processes.terminate, service)
        return Stopped(service, code, time.monotonic() - started)

    async def stop(self) -> dict[str, int]:
        """SIGTERM every service; their exit codes."""
        return await asyncio.to_thread(self.processes.stop)

    def log_tail(self, service: str, lines: int = 30) -> str:
        path = self.processes.log_dir / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def logs(self, lines: int = 15) -> str:
        """The end of every service's log (for a failing test's message)."""
        return "\n".join(f"--- {s} ---\n{self.log_tail(s, lines)}" for s in self.services)

    async def tasks(self, service: str, timeout_s: float = 10) -> str:
        """Where each asyncio task of a running service waits (its SIGUSR1 dump), for a failing test's message."""
        proc = self.processes.procs.get(service)
        if proc is None:
            return f"{service} is not running"
        path = self.processes.log_dir / f"{service}.log"
        since = path.stat().st_size if path.exists() else 0
        os.kill(proc.process.pid, signal.SIGUSR1)

        def dump() -> str:
            with path.open("rb") as f:
                f.seek(since)
                for line in f.read().decode(errors="replace").splitlines():
                    with contextlib.suppress(ValueError):
                        if "on SIGUSR1" in (msg := str(json.loads(line).get("msg", ""))):
                            return msg
            return ""

        return str(await wait_for(dump, timeout_s=timeout_s, at_deadline="return")) or f"{service}: no task dump"

    def mark(self) -> dict[str, int]:
        """Where each service's log ends now (for :meth:`abandoned`)."""
        return {s: p.stat().st_size for s in self.services if (p := self.processes.log_dir / f"{s}.log").exists()}

    def abandoned(self, since: dict[str, int]) -> dict[str, list[str]]:
        """What each service abandoned at the end of a grace period since ``since`` (its stop's warnings)."""
        out: dict[str, list[str]] = {}
        for service in self.services:
            path = self.processes.log_dir / f"{service}.log"
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(since.get(service, 0))
                lines = f.read().decode(errors="replace").splitlines()
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                msg = str(entry.get("msg", ""))
                if entry.get("logger") == "services.runtime.service" and "abandoned" in msg:
                    out.setdefault(service, []).append(f"{msg} {entry.get('tasks', '')}".strip())
        return out
