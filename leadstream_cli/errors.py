"""One-line reasons for the analysts' commands (replay, export, views) instead of a Python traceback.

A wrong setting (an unreachable broker, a database URL pointing nowhere, a missing key outside development) or
an output folder that cannot be written is the user's to fix: the command names what is wrong and the setting
to change, and exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console()  # on stdout, as the commands always printed their errors (scripts and tests read it there)
notes = Console(stderr=True)  # remarks on a run that went fine (stdout keeps the report a script reads)


def _database(settings: Any) -> str:
    """The database URL without its password (it is printed)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: say so rather than print it
        return "(an invalid URL)"


def reason(exc: BaseException, settings: Any) -> str | None:
    """What a user has to fix for ``exc``, in one line, or None when it is not a setting's fault.

    The error may come wrapped (SQLAlchemy wraps the driver's): its causes are asked too."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        why = _reason(cause, settings)
        if why is not None:
            return why
        cause = getattr(cause, "orig", None) or cause.__cause__ or cause.__context__
    return None


def _reason(exc: BaseException, settings: Any) -> str | None:
    import asyncpg
    from aiokafka.errors import KafkaConnectionError

    from services.runtime.secrets import InsecureConfiguration

    if isinstance(exc, InsecureConfiguration):
        return f"{exc} (or set LEADSTREAM_ENV=development on a development machine)"
    if isinstance(exc, KafkaConnectionError):
        return f"cannot reach the Kafka broker at {settings.kafka_bootstrap_servers!r} (KAFKA_BOOTSTRAP_SERVERS): {exc}"
    if isinstance(
        exc,
        asyncpg.InvalidCatalogNameError
        | asyncpg.InvalidAuthorizationSpecificationError
        | asyncpg.InvalidPasswordError
        | asyncpg.CannotConnectNowError,
    ) or (isinstance(exc, asyncpg.InterfaceError) and "DSN" in str(exc)):
        return f"cannot use the database {_database(settings)} (DATABASE_URL): {exc}"
    # aiokafka wraps its own socket errors (above): a bare refused or unresolvable connection is Postgres'.
    if isinstance(exc, ConnectionRefusedError | socket.gaierror | TimeoutError):
        return f"cannot reach the database {_database(settings)} (DATABASE_URL): {exc}"
    return None


@contextlib.contextmanager
def user_errors(settings: Any) -> Iterator[None]:
    """Turn an error of the user's settings into ``error: <reason>`` and exit 1 (see :func:`reason`)."""
    try:
        yield
    except Exception as exc:
        why = reason(exc, settings)
        if why is None:
            raise
        fail(why)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: MESSAGE`` and exit with ``code``."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def notice(message: str | None) -> None:
    """Print ``note: MESSAGE`` on stderr (nothing for None): a remark on a run that succeeded, such as a filter that
    matched nothing (:mod:`leadstream_cli.nomatch`). The exit status is the command's."""
    if message is not None:
        notes.print(f"[yellow]note:[/] {escape(message)}", soft_wrap=True, highlight=False)
