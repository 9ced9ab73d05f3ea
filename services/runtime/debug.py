"""What a process is doing, for a service that is alive but does not move: the one task dump (SIGUSR1 logs it,
a stalled consumer logs it once, tests print it when they time out)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any


def task_stacks() -> str:
    """Where every asyncio task of this loop waits: one line per task, the chain of its awaits (file, line and
    function of each frame: code locations, no values)."""
    lines = []
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    for task in tasks:
        frames: list[str] = []
        awaiting: Any = task.get_coro()
        while awaiting is not None and len(frames) < 40:  # the chain of awaits, outermost first
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
            if frame is not None:
                frames.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}")
            awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "gi_yieldfrom", None)
        lines.append(f"{task.get_name()}: {' > '.join(frames)}")
    return f"asyncio tasks ({len(tasks)}):\n" + "\n".join(lines)


def log_task_stacks(logger: logging.Logger, level: int, headline: str, **extra: Any) -> None:
    """Log ``headline`` and :func:`task_stacks` as one message. The dump is the message template itself: code
    locations only, and the logging scrubber redacts what it takes for data in arguments (file names, line
    numbers)."""
    logger.log(level, f"{headline}; {task_stacks()}".replace("%", "%%"), extra=extra or None)
