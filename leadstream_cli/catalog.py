"""The leadstream services and their default HTTP ports: the one list the CLI, the demo and the tests use.

A module of its own, with no imports, because every ``leadstream`` invocation reads it (``run``'s and ``outbox``'s
help name the services): :mod:`leadstream_cli.processes`, which starts them, pulls httpx and the settings.
"""

from __future__ import annotations

DEFAULT_PORTS = {
    "discovery": 8101,
    "enrichment": 8102,
    "messaging": 8103,
    "outreach": 8104,
    "video": 8105,
    "projection": 8106,
    "console": 8107,
    "webhooks": 8108,
}
SERVICES = tuple(DEFAULT_PORTS)
"""Every leadstream service, in start order (the one list the CLI, the demo and the tests use)."""
