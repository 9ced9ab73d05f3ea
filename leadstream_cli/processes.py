"""Start and stop the services as separate OS processes (used by the demo and the end-to-end tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEFAULT_PORTS = {
    "discovery": 8101,
    "enrichment": 8102,
    "messaging": 8103,
    "outreach": 8104,
    "video": 8105,
    "projection": 8106,
    "console": 8107,
    "webhooks": 8108,
}
SERVICES = tuple(DEFAULT_PORTS)
"""Every leadstream service, in start order (the one list the CLI, the demo and the tests use)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something listens on 127.0.0.1:port."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class ServiceProcess:
    """One running service process and where it listens."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ServiceFleet:
    """The services of one run; stops them all (TERM, then KILL) on :meth:`stop`."""

    env: dict[str, str]
    log_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, name: str, **extra: str) -> ServiceProcess:
        """Start ``python -m services.<name>`` with this fleet's environment (and ``extra`` settings of its own)."""
        port = self.ports[name]
        if port_in_use(port):
            raise RuntimeError(f"port {port} for {name} is in use: is another leadstream demo running?")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = {**self.env, **self.console_env(), "LEADSTREAM_HTTP_PORT": str(port)}
        if name == "outreach" and "LEADSTREAM_PUBLIC_BASE_URL" not in self.env:
            # Where its callbacks and the simulated provider's hosted page are reached: this fleet's port.
            env["LEADSTREAM_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
        env.update(extra)
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sp = ServiceProcess(name, port, proc, log_path)
        self.procs[name] = sp
        return sp

    def console_env(self) -> dict[str, str]:
        """Where the console finds the other services of this fleet, and where users find the console."""
        env = {
            f"LEADSTREAM_CONSOLE_{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in self.ports.items()
        }
        env["LEADSTREAM_CONSOLE_PUBLIC_URL"] = env.pop("LEADSTREAM_CONSOLE_CONSOLE_URL")
        return env

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Poll every service's ``/readyz`` until all answer 200; raises with the failing reasons at the deadline."""
        deadline = time.monotonic() + timeout_s
        pending = dict(self.procs)
        last: dict[str, str] = {}
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name, sp in list(pending.items()):
                    if sp.process.poll() is not None:
                        raise RuntimeError(f"{name} exited with {sp.process.returncode}; see {sp.log_path}")
                    try:
                        r = client.get(sp.url + "/readyz")
                        if r.status_code == 200:
                            del pending[name]
                        else:
                            last[name] = r.text
                    except httpx.HTTPError as exc:
                        last[name] = repr(exc)
                if pending and time.monotonic() > deadline:
                    raise RuntimeError(
                        f"not ready after {timeout_s}s: {', '.join(f'{n}: {last.get(n)}' for n in pending)}"
                    )
                if pending:
                    time.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL one service (crash simulation)."""
        sp = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sp.process.pid, signal.SIGKILL)
        sp.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop every service: SIGTERM, then SIGKILL after 15 s."""
        for sp in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sp.process.pid, signal.SIGTERM)
        for sp in self.procs.values():
            try:
                sp.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(sp.process.pid, signal.SIGKILL)
                sp.process.wait(timeout=5)
        self.procs.clear()
