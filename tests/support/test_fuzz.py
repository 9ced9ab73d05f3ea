"""tests/support/fuzz.py: the interpreter bug becomes a description; any other error stays an error."""

from __future__ import annotations

import pytest

from tests.support.fuzz import BUG, _tolerant


def test_the_ast_recursion_bug_becomes_an_unknown_description() -> None:
    def crashes(f: object) -> str:
        raise SystemError(f"{BUG} (before=216, after=124)")

    assert "<unknown>" in _tolerant(crashes)(lambda x: x)


def test_other_errors_are_not_hidden() -> None:
    def fails(f: object) -> str:
        raise SystemError("something else")

    with pytest.raises(SystemError, match="something else"):
        _tolerant(fails)(lambda x: x)
    assert _tolerant(lambda f: "lambda x: x")(lambda x: x) == "lambda x: x"
