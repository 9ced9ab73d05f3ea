"""Schemathesis' command line (``st``), run with one patch for an interpreter bug: ``python -m tests.support.fuzz``.

CPython 3.11 (up to 3.11.7, this machine's) can raise ``SystemError: AST constructor recursion depth mismatch``
from ``ast.parse`` when it is called deep in a recursion (python/cpython#106905). Hypothesis calls it to describe
a lambda when it prints a recursive strategy (the projection's document makes one), and only expects a
SyntaxError there, so the fuzzer's run ended with "Runtime Error" after every case had passed. A description is
only a name in a message: on that error it becomes Hypothesis' own "unknown" description, and the run goes on.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

from hypothesis.internal import lambda_sources

BUG = "AST constructor recursion depth mismatch"


def _tolerant(describe: Callable[..., str]) -> Callable[..., str]:
    def description(f: Any, *args: Any, **kwargs: Any) -> str:
        try:
            return describe(f, *args, **kwargs)
        except SystemError as exc:
            if BUG not in str(exc):
                raise
            params = str(inspect.signature(f))[1:-1]  # as Hypothesis words an unknown lambda
            return f"lambda {params}: <unknown>" if params else "lambda: <unknown>"

    return description


def main() -> int:
    """Run ``st`` with the patch (arguments as ``st`` takes them)."""
    lambda_sources._lambda_description = _tolerant(lambda_sources._lambda_description)
    from schemathesis.cli import schemathesis

    sys.argv[0] = "st"
    return int(schemathesis() or 0)


if __name__ == "__main__":
    sys.exit(main())
