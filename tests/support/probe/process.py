"""Services as OS processes for reliability tests: start ``python -m services.<name>``, kill, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import IO

from leadstream_cli.processes import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[3]

__all__ = ["ROOT", "ServiceProcess", "free_port"]


class ServiceProcess:
    """One service process with its output in a log file (shown when a test fails)."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self) -> None:
        """Start the process (its output appends to the log file)."""
        self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=die_with_parent(),
        )

    async def kill(self) -> int:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill. Returns the exit code."""
        return await self._signal(signal.SIGKILL)

    async def exited(self, timeout_s: float = 60.0) -> int:
        """Wait for the process to end by itself (e.g. at a crash point); returns its exit code."""
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout=timeout_s)
        self._close_log()
        return code

    async def stop(self) -> int:
        """SIGTERM and wait for a clean exit (SIGKILL if it does not come). Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=30)
            except TimeoutError:
                return await self.kill()
        self._close_log()
        return self.proc.returncode if self.proc.returncode is not None else 0

    async def _signal(self, sig: int) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)
        code = await self.proc.wait()
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's output."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
