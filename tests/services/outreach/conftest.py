"""Fixtures of the outreach tests: a real IMAP server (Dovecot) for the reply inbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import Dovecot, run_dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of this test session (its own folder and port), stopped at the end of the session."""
    yield from run_dovecot()
