"""Start and stop the services as separate OS processes (used by the demo and the end-to-end tests)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.runtime.settings import METRICS_PORT_OFFSET, RuntimeSettings

from .catalog import DEFAULT_PORTS as DEFAULT_PORTS
from .catalog import SERVICES as SERVICES  # the services and their ports live in catalog (cheap for every command)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a fleet's owner (Ctrl-C, a service manager, a closed terminal)."""
KILL_MARGIN_S = 5.0
"""How long past a service's own grace period a fleet waits before SIGKILL."""


def shutdown_grace_s(env: dict[str, str]) -> float:
    """The grace period the services of ``env`` give themselves on SIGTERM (LEADSTREAM_SHUTDOWN_GRACE_S)."""
    value = env.get("LEADSTREAM_SHUTDOWN_GRACE_S")
    return float(value) if value else float(RuntimeSettings.model_fields["shutdown_grace_s"].default)


class StopSignals:
    """Ctrl-C, SIGTERM and SIGHUP as one way to stop: while :meth:`installed`, each raises KeyboardInterrupt in
    the main thread, so the ``finally`` that stops the services runs whatever stopped the process.

    Inside :meth:`deferred` a signal waits for the end of the block (starting a child and recording it must
    not be split: a child started but not recorded would be left running); inside :meth:`ignored` (the stop
    itself) a second signal does not cut the stop short.
    """

    def __init__(self) -> None:
        self._deferring = 0
        self._ignoring = 0
        self._pending: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the stop signals this way for the duration of the block."""
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self._ignoring:
            return
        if self._deferring:
            self._pending = signum
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a stop signal until the block is done, then raise it."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            pending, self._pending = self._pending, None
            if pending is not None and not self._deferring:
                raise KeyboardInterrupt(signal.Signals(pending).name)

    @contextlib.contextmanager
    def ignored(self) -> Iterator[None]:
        """Ignore stop signals during the block."""
        self._ignoring += 1
        try:
            yield
        finally:
            self._ignoring -= 1


STOP = StopSignals()
"""The process's stop signals (the demo installs them; a fleet defers them while it starts a service)."""


PORT_SLICE = 2 * METRICS_PORT_OFFSET
"""Ports of one process: pytest-xdist worker N draws from [PORT_BASE + N * PORT_SLICE, ... + METRICS_PORT_OFFSET),
and each port's metrics companion (+ METRICS_PORT_OFFSET: where a service started on it listens for /metrics) is in
the upper half of the same slice, never another's."""
PORT_BASE = 12000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now, for a server we start, below the kernel's ephemeral range.

    Not ``bind(0)``: the kernel hands out ports of its ephemeral range, the same range every outgoing connection
    takes its local port from, and the fleets open hundreds (Kafka and Postgres clients). A port picked that way
    was some client's by the time a service bound it ("address already in use", a console fleet failing to start
    in CI). Below that range only listeners take ports; each xdist worker draws from its own slice, so parallel
    sessions never pick the same one, and a process never hands out a port twice. The port + ``METRICS_PORT_OFFSET``
    (where a service started on it puts /metrics) is free too and reserved with it: with a slice of 1,500 ports,
    a worker's HTTP port's companion was in the next worker's slice ("port 14025 for discovery is in use").
    """
    return free_port_block(1)


def free_port_block(n: int) -> int:
    """The first of ``n`` consecutive free ports (as :func:`free_port` chooses them), e.g. a demo's ``--port-base``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    low = PORT_BASE + index * PORT_SLICE
    high = min(low + METRICS_PORT_OFFSET, _ephemeral_low() - METRICS_PORT_OFFSET)
    if high - low < 50 + n:  # an unusual range or many workers: fall back to the kernel's choice
        if n != 1:
            raise RuntimeError(f"no room for {n} ports below the ephemeral range in this worker's slice")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    span = high - low - n + 1
    start = (os.getpid() * 7919) % span  # separate runs of one worker slot start apart
    for step in range(span):
        first = low + (start + step) % span
        block = [*range(first, first + n), *range(first + METRICS_PORT_OFFSET, first + METRICS_PORT_OFFSET + n)]
        if not any(p in _handed_out for p in block) and all(_bindable(p) for p in block):
            _handed_out.update(block)
            return first
    raise RuntimeError(f"no {n} free consecutive ports left in {low}..{high - 1}")


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when this process dies, however it dies.

    The services run in sessions of their own (so a Ctrl-C reaches the CLI, which stops them in order); without
    this, a SIGKILLed demo or test run left its services running, holding ports and CPU. Linux only (``prctl``;
    elsewhere None). The signal follows the *thread* that forks, so only the main thread's children get it (a
    worker thread's end must not stop them). A child whose parent died before the call stops at once.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nothing will signal us
            os._exit(1)

    return arm


PR_SET_PDEATHSIG = 1  # linux/prctl.h


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

    @property
    def metrics_url(self) -> str:
        """Where its ``/metrics`` listener is (the port + ``METRICS_PORT_OFFSET``, the companion reserved with it)."""
        return f"http://127.0.0.1:{self.port + METRICS_PORT_OFFSET}"


@dataclass
class ServiceFleet:
    """The services of one run; stops them all (SIGTERM, then SIGKILL past their grace period) on :meth:`stop`."""

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
        with log_path.open("ab") as log, STOP.deferred():
            # Its own session: a Ctrl-C or a closed terminal reaches this process, which stops the services
            # in order, instead of every process at once.
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
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

    def terminate(self, name: str) -> int:
        """SIGTERM one service and wait for it (SIGKILL past its grace period); returns its exit code."""
        return self._stop({name: self.procs.pop(name)})[name]

    def stop(self) -> dict[str, int]:
        """Stop every service: SIGTERM to all, then SIGKILL to any still running past their grace period.

        Returns each service's exit code: 0 for a clean stop, -15 for one stopped while Python was still
        importing it (before it handles signals, when it has done nothing yet), -9 when it had to be killed.
        """
        procs, self.procs = self.procs, {}
        return self._stop(procs)

    def _stop(self, procs: dict[str, ServiceProcess]) -> dict[str, int]:
        for sp in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sp.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + shutdown_grace_s(self.env) + KILL_MARGIN_S
        codes: dict[str, int] = {}
        for name, sp in procs.items():
            try:
                codes[name] = sp.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(sp.process.pid, signal.SIGKILL)
                codes[name] = sp.process.wait(timeout=10)
        return codes
