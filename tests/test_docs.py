"""The documents name what the code has: every event type of the contract is in the README's table with its topic,
every ``LEADSTREAM_*`` variable a document names is a setting (or a script's or the tests' own variable), and every
``make <target>`` a document names is a target of the Makefile."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import leadstream_schemas
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from leadstream_cli.processes import SERVICES

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    {
        ROOT / "README.md",
        ROOT / "schemas" / "README.md",
        ROOT / "deploy" / "helm" / "leadstream" / "values.yaml",
        *ROOT.glob("services/*/README.md"),
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("deploy/**/README.md"),
        *ROOT.glob("examples/**/README.md"),
    }
)
SETTINGS_MODULES = ("runtime", *SERVICES)

# Variables that are no setting of a service: the local scripts', compose's and the tests' own, each with a file
# that reads it (checked below, so that this list cannot outlive them).
OTHER_VARIABLES = {
    "LEADSTREAM_CACHE_DIR": "deploy/local/_lib.sh",
    "LEADSTREAM_RUN_DIR": "deploy/local/_lib.sh",
    "LEADSTREAM_CHROMIUM": "deploy/local/frontend.sh",
    "LEADSTREAM_KAFKA_HOST_PORT": "deploy/compose/docker-compose.yml",
    "LEADSTREAM_POSTGRES_HOST_PORT": "deploy/compose/docker-compose.yml",
    "LEADSTREAM_TEST_INFRA": "tests/support/infra.py",
    "LEADSTREAM_TEST_KEEP_TOPICS": "tests/conftest.py",
    "LEADSTREAM_TEST_CPU": "tests/support/cpu_report.py",
}


def _settings_variables() -> set[str]:
    names: set[str] = set()
    for module_name in SETTINGS_MODULES:
        module = importlib.import_module(f"services.{module_name}.settings")
        for cls in vars(module).values():
            if not (isinstance(cls, type) and issubclass(cls, BaseSettings)):
                continue
            prefix = str(cls.model_config.get("env_prefix", ""))
            for field, info in cls.model_fields.items():
                names.add((prefix + field).upper())
                alias = info.validation_alias
                if isinstance(alias, AliasChoices):
                    names.update(a.upper() for a in alias.choices if isinstance(a, str))
    return names


def _named_variables(text: str, known: set[str]) -> set[str]:
    """Every variable ``text`` names: ``LEADSTREAM_X`` and the short forms after one (``LEADSTREAM_A_B_S`` /
    ``_C_S`` names ``LEADSTREAM_A_C_S`` or ``LEADSTREAM_C_S``, whichever is known). A name ending in ``_`` is a
    pattern (``LEADSTREAM_CONSOLE_<SERVICE>_URL``, ``LEADSTREAM_CONSOLE_*``), not a variable."""
    named: set[str] = set()
    for line in text.splitlines():
        last = None
        for match in re.finditer(r"\b(LEADSTREAM_[A-Z0-9_]+)|(?<![A-Za-z0-9])(_[A-Z][A-Z0-9_]*[A-Z0-9])\b", line):
            full, short = match.groups()
            if full:
                if not full.endswith("_"):
                    named.add(full)
                    last = full
            elif last is not None:
                parts = last.split("_")
                candidates = ["_".join(parts[:k]) + short for k in range(len(parts) - 1, 0, -1)]
                named.add(next((c for c in candidates if c in known), f"{last}{short}"))
    return named


def test_every_event_type_is_in_the_readme_with_its_topic() -> None:
    rows = re.findall(
        r"^\| `(leadstream\.[a-z_]+\.[a-z_]+\.v\d+)` \| `([a-z.0-9]+)` \|", (ROOT / "README.md").read_text(), re.M
    )
    listed = dict(rows)
    assert len(listed) == len(rows), "a type is listed twice"
    contract = {name: cls.topic for name, cls in leadstream_schemas.EVENT_TYPES.items()}
    assert sorted(set(contract) - set(listed)) == [], "event types missing from the README's table"
    assert sorted(set(listed) - set(contract)) == [], "the README lists types the contract does not have"
    assert {t: listed[t] for t in contract} == contract


def test_every_leadstream_variable_in_the_documents_exists() -> None:
    for name, reader in OTHER_VARIABLES.items():
        assert name in (ROOT / reader).read_text(), f"{reader} no longer reads {name}"
    known = _settings_variables() | set(OTHER_VARIABLES)
    assert "LEADSTREAM_CONSUMER_MAX_ATTEMPTS" in known and "LEADSTREAM_CONSOLE_SESSION_SECRET" in known
    unknown = {
        f"{doc.relative_to(ROOT)}: {name}"
        for doc in DOCUMENTS
        for name in _named_variables(doc.read_text(), known)
        if name not in known
    }
    assert sorted(unknown) == []


def test_every_make_target_in_the_documents_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z][a-zA-Z0-9_-]*):", makefile, re.M))
    assert {"demo", "test", "lint"} <= targets
    named = {
        f"{doc.relative_to(ROOT)}: make {target}"
        for doc in DOCUMENTS
        for target in re.findall(r"`make ([a-z][a-z0-9_-]*)", doc.read_text())
        if target not in targets
    }
    assert sorted(named) == []
