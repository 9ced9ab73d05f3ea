"""Fault injection for reliability tests: SIGKILL this process when it reaches a named point.

``LEADSTREAM_CRASH_AT`` lists points as ``name[:n]`` separated by commas: the process kills itself
(SIGKILL, no shutdown code runs, as in an OOM kill or a power cut) the ``n``-th time (default the first)
it reaches the point ``name``. Empty (the default) disables it. The points are named where the code
calls :meth:`CrashPoints.reached`, e.g. ``outreach.send.before_call`` and ``outreach.send.after_call``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter


class CrashPoints:
    """The crash points of one process, parsed from the ``crash_at`` setting."""

    def __init__(self, spec: str = "") -> None:
        self.at: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, nth = item.partition(":")
            self.at[name] = int(nth) if nth else 1
        self.seen: Counter[str] = Counter()

    def reached(self, name: str) -> None:
        """Count a pass through ``name``; SIGKILL the process on the configured pass."""
        if name not in self.at:
            return
        self.seen[name] += 1
        if self.seen[name] == self.at[name]:
            os.kill(os.getpid(), signal.SIGKILL)
