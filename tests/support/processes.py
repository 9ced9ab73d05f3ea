"""The operating system's view of processes, for tests that must prove none was left behind."""

from __future__ import annotations

import os
import subprocess


def _ps(*args: str) -> str:
    return subprocess.run(["ps", *args], capture_output=True, text=True, check=False).stdout


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from ``ps``: Linux and macOS)."""
    children = []
    for line in _ps("-e", "-o", "pid=,ppid=").splitlines():
        fields = line.split()
        if len(fields) == 2 and int(fields[1]) == pid and alive(int(fields[0])):
            children.append(int(fields[0]))
    return sorted(children)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _ps("-o", "stat=", "-p", str(pid)).strip().startswith("Z")
