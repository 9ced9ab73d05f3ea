"""The Dockerfile and .dockerignore: what the image contains and how it runs, checked without a Docker engine.

The Dockerfile is parsed into instructions; .dockerignore is evaluated with Docker's rules (patterns in order,
`!` re-includes, the last match wins, a pattern matching a parent directory matches its contents).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction (continuations joined, comments dropped)."""

    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile in order."""
    out: list[Instruction] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        keyword, _, args = buf.strip().partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
        buf = ""
    return out


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    """Instructions per build stage, by stage name."""
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for ins in instructions:
        if ins.keyword == "FROM":
            name = ins.args.split(" AS ")[-1].strip() if " AS " in ins.args else str(len(result))
            current = result.setdefault(name, [ins])
        elif current is not None:
            current.append(ins)
    return result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@cache
def dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    """(is_exception, regex) per .dockerignore line."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return tuple(rules)


def in_context(path: str) -> bool:
    """True when ``path`` (relative to the repository root) is sent to the Docker build."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_rules():
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return not excluded


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[Instruction]]:
    instructions = parse_dockerfile((ROOT / "Dockerfile").read_text())
    return {"__all__": instructions, **stages(instructions)}


def _one(stage: list[Instruction], keyword: str) -> str:
    (found,) = [i.args for i in stage if i.keyword == keyword]
    return found


def test_two_stages_on_python_3_11_slim(dockerfile: dict[str, list[Instruction]]) -> None:
    instructions = dockerfile["__all__"]
    assert instructions[0] == Instruction("ARG", "PYTHON_IMAGE=python:3.11-slim")
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert list(dockerfile)[-1] == "runtime", "the runtime stage must be the last (default target)"


def test_build_installs_both_distributions_without_dev_extras(dockerfile: dict[str, list[Instruction]]) -> None:
    runs = " ".join(i.args for i in dockerfile["build"] if i.keyword == "RUN")
    install = re.search(r"pip install ([^&]+)", runs)
    assert install is not None
    args = shlex.split(install.group(1))
    assert args == ["./schemas", "."], "non-editable installs of exactly the two distributions"
    assert "[dev]" not in runs and " -e " not in runs
    assert "pip check" in runs and "compileall" in runs


def test_runtime_runs_leadstream_as_an_unprivileged_user(dockerfile: dict[str, list[Instruction]]) -> None:
    runtime = dockerfile["runtime"]
    uid, gid = (int(x) for x in _one(runtime, "USER").split(":"))
    assert uid > 0 and gid > 0
    assert json.loads(_one(runtime, "ENTRYPOINT")) == ["leadstream"]
    assert json.loads(_one(runtime, "CMD")) == ["run", "projection"]
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/leadstream /opt/leadstream"], "only the venv crosses into the runtime"
    assert [i for i in runtime if i.keyword == "RUN" and "pip install" in i.args] == []
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["leadstream"] == "leadstream_cli.main:app"


def test_image_user_and_port_agree_with_the_chart_and_compose(dockerfile: dict[str, list[Instruction]]) -> None:
    runtime = dockerfile["runtime"]
    uid, gid = (int(x) for x in _one(runtime, "USER").split(":"))
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(i.args for i in runtime if i.keyword == "ENV")))
    assert env["LEADSTREAM_HTTP_HOST"] == "0.0.0.0"
    port = int(env["LEADSTREAM_HTTP_PORT"])
    assert int(_one(runtime, "EXPOSE")) == port
    values = yaml.safe_load((ROOT / "deploy/helm/leadstream/values.yaml").read_text())
    assert (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]) == (uid, gid)
    assert values["http"]["port"] == port
    compose = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yml").read_text())
    assert int(compose["x-leadstream-env"]["LEADSTREAM_HTTP_PORT"]) == port


def test_every_copy_source_is_in_the_build_context(dockerfile: dict[str, list[Instruction]]) -> None:
    sources = []
    for ins in dockerfile["__all__"]:
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            *srcs, _dest = ins.args.split()
            sources += srcs
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert in_context(src.rstrip("/")), f"{src} is excluded by .dockerignore"


def test_dockerignore_sends_the_sources_and_nothing_local() -> None:
    needed = [
        "pyproject.toml",
        "schemas/pyproject.toml",
        "schemas/README.md",  # the schemas distribution's readme, read by its build
        "schemas/src/leadstream_schemas/py.typed",
        "leadstream_cli/main.py",
        "services/runtime/identity_migrations/script.py.mako",
    ]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "services").glob("*/migrations/versions/*.py")]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "services/runtime").glob("*_migrations/**/*.py")]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "schemas/src").rglob("*.py")]
    assert len(needed) > 20
    assert [p for p in needed if not in_context(p)] == []
    unwanted = [
        ".venv/bin/python",
        ".run/env",
        ".git/HEAD",
        ".cache/leadstream/bin/helm",
        "tests/conftest.py",
        "deploy/local/infra.sh",
        "services/runtime/__pycache__/settings.cpython-311.pyc",
        "leadstream.egg-info/PKG-INFO",
        "schemas/src/leadstream_schemas.egg-info/PKG-INFO",
        "services/.mypy_cache/x.json",
    ]
    assert [p for p in unwanted if in_context(p)] == []
