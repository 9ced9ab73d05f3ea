"""A real IMAP server for the tests: Debian's Dovecot, started by ``deploy/local/dovecot.sh`` with its own state
folder, port and test user (installed first when missing, like Postgres), stopped by its PID afterwards; and
mail delivered into it with IMAP APPEND."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aioimaplib

from tests.support.infra import ROOT, free_port

SCRIPT = ROOT / "deploy/local/dovecot.sh"


@dataclass(frozen=True)
class Dovecot:
    """Where the test IMAP server listens and its mailbox's login."""

    host: str
    port: int
    user: str
    password: str

    async def deliver(self, raw: bytes, mailbox: str = "INBOX", *, arrived: datetime | None = None) -> None:
        """Put a message into the mailbox (IMAP APPEND), as the mail server would on delivery; ``arrived`` is its
        arrival time (IMAP's INTERNALDATE: what SEARCH SINCE reads), now when not given."""
        client = aioimaplib.IMAP4(host=self.host, port=self.port, timeout=20)
        await client.wait_hello_from_server()
        assert (await client.login(self.user, self.password)).result == "OK"
        try:
            appended = await client.append(raw, mailbox=mailbox, date=arrived)
            assert appended.result == "OK", appended.lines
        finally:
            await client.logout()


def run_dovecot() -> Iterator[Dovecot]:
    """Start Dovecot in a new folder on a free port; yield it; stop it (by PID) and remove the folder.

    The folder is world-readable (its mail processes run as an unprivileged user when the tests run as root),
    so it is not pytest's private temporary folder."""
    state = Path(tempfile.mkdtemp(prefix="leadstream-dovecot-"))
    state.chmod(0o755)
    port = free_port()
    env = {**os.environ, "DOVECOT_STATE": str(state), "DOVECOT_IMAP_PORT": str(port)}
    subprocess.run(["bash", str(SCRIPT), "start"], check=True, env=env, cwd=ROOT)
    try:
        yield Dovecot("127.0.0.1", port, "replies@leadstream.test", "leadstream")
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], check=False, env=env, cwd=ROOT)
        shutil.rmtree(state, ignore_errors=True)
