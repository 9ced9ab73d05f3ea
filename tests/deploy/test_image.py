"""The Dockerfile and .dockerignore: what the image contains and how it runs, checked without a Docker engine.

The Dockerfile is parsed into instructions; .dockerignore is evaluated with Docker's rules (patterns in order,
`!` re-includes, the last match wins, a pattern matching a parent directory matches its contents).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from services.console.app import VENDOR

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


def test_stages_on_python_3_11_slim_pinned_by_digest_after_the_consoles_npm_packages(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    instructions = dockerfile["__all__"]
    assert instructions[0].keyword == "ARG"
    name, _, image = instructions[0].args.partition("=")
    assert name == "PYTHON_IMAGE"
    # The tag says what it is, the digest what it is exactly: a build pulls the same base forever.
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", image), image
    # One place: nothing else names the base image (compose and the chart build or run this Dockerfile's image).
    elsewhere = [
        str(p.relative_to(ROOT))
        for p in [ROOT / "Makefile", ROOT / ".ci" / "run", *(ROOT / "deploy").rglob("*")]
        if p.is_file() and p.suffix not in (".json",) and "python:3.11-slim" in p.read_text(errors="ignore")
    ]
    assert elsewhere == []
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert froms == ["${NODE_IMAGE} AS frontend", "${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    frontend = " ".join(i.args for i in dockerfile["frontend"] if i.keyword == "RUN")
    assert "npm ci" in frontend, "the console's packages come from the lock file"
    copied = [i.args for i in dockerfile["build"] if i.keyword == "COPY" and i.args.startswith("--from=frontend")]
    assert copied == ["--from=frontend /console/node_modules services/console/node_modules"]
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "services.console"
    ]

    assert {f"node_modules/{rel}" for rel in VENDOR.values()} <= set(data), "every served file is package data"
    assert list(dockerfile)[-1] == "runtime", "the runtime stage must be the last (default target)"


def test_build_installs_the_lock_with_hashes_then_both_distributions_without_deps(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    build = dockerfile["build"]
    runs = " ".join(i.args for i in build if i.keyword == "RUN")
    installs = [shlex.split(m) for i in build if i.keyword == "RUN" for m in re.findall(r"pip install ([^&]+)", i.args)]
    assert installs == [
        ["--require-hashes", "--no-deps", "-r", "requirements/${LOCKFILE}.txt"],
        ["--no-deps", "--no-build-isolation", "./schemas", "."],
    ], "every third-party package from the hash-checked lock; the two distributions non-editable, nothing resolved"
    assert "ARG LOCKFILE=runtime" in [f"{i.keyword} {i.args}" for i in build]
    assert "[dev]" not in runs and " -e " not in runs
    assert "pip check" in runs and "compileall" in runs
    # The lock is installed before the sources are copied: a code change reuses the dependencies' layer.
    keywords = [f"{i.keyword} {i.args}" for i in build]
    assert keywords.index("COPY requirements/ requirements/") < keywords.index("COPY services/ services/")


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


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """A lock file's packages: name -> (version, hashes)."""
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    out: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if m:
            out[m.group(1).lower()] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return out


def _pins(requirements: list[str]) -> dict[str, str]:
    out = {}
    for r in requirements:
        m = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^]]*\])?==([^\s;]+)(?:\s*;.+)?", r)  # a marker may follow
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_lock_files_pin_every_package_with_hashes_and_agree_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locks = {name: _lock(name) for name in ("runtime", "analytics", "dev")}
    for name, lock in locks.items():
        assert len(lock) > 20, name
        assert [p for p, (_, hashes) in lock.items() if not hashes] == [], f"{name}: packages without a hash"
        assert "leadstream" not in lock and "leadstream-schemas" not in lock, "the local distributions are not locked"
        assert "setuptools" in lock, f"{name}: the build backend of the local distributions is locked too"
    runtime_pins = _pins(project["dependencies"])
    analytics_pins = _pins(project["optional-dependencies"]["analytics"])
    dev_pins = _pins(project["optional-dependencies"]["dev"])
    assert len(runtime_pins) == len(project["dependencies"]) - 1  # all but leadstream-schemas (local)
    for name, pins in (
        ("runtime", runtime_pins),
        ("analytics", runtime_pins | analytics_pins),
        ("dev", runtime_pins | analytics_pins | dev_pins),
    ):
        lock = locks[name]
        locked = {p: lock.get(p, ("missing", []))[0] for p in pins}
        assert locked == pins, f"requirements/{name}.txt is stale: make lock"
    # The analytics-only packages stay out of the service image's lock.
    assert set(analytics_pins) & set(locks["runtime"]) == set()
    # The image runs the versions the tests ran: every package in two locks has one version.
    for name in ("runtime", "analytics"):
        differ = {p: (v, locks["dev"][p][0]) for p, (v, _) in locks[name].items() if locks["dev"].get(p, (v,))[0] != v}
        assert differ == {}, f"requirements/{name}.txt and dev.txt disagree"
        assert set(locks[name]) <= set(locks["dev"]), name


def test_make_venv_installs_the_dev_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "requirements/dev.txt" in recipe.splitlines()[0], "the venv is rebuilt when the lock changes"
    assert "pip install -q --require-hashes --no-deps -r requirements/dev.txt" in recipe
    assert "pip install -q --no-deps --no-build-isolation -e ./schemas -e '.[analytics,dev]'" in recipe
    assert "pip check" in recipe
    for name in ("dev", "runtime", "analytics"):
        assert f"requirements/{name}.in" in makefile and (ROOT / "requirements" / f"{name}.in").is_file()


def test_an_installed_cli_offers_nothing_that_needs_the_repository(tmp_path: Path) -> None:
    """Installed as a package (the image), `leadstream infra` is gone: deploy/local is not in the image."""
    code = (
        "import sys; from typer.testing import CliRunner; from leadstream_cli.main import app; "
        "r = CliRunner().invoke(app, ['--help']); print(r.output); sys.exit(r.exit_code)"
    )
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "leadstream_cli", site / "leadstream_cli", ignore=shutil.ignore_patterns("__pycache__"))
    # -S: no .pth files, so the editable install's finder cannot map leadstream_cli back to the checkout.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    path = [str(ROOT / "schemas" / "src"), *deps]
    env = {**os.environ, "COLUMNS": "200"}

    def help_text(*first: Path) -> subprocess.CompletedProcess[str]:
        pythonpath = os.pathsep.join([*map(str, first), str(ROOT), *path])
        return subprocess.run(
            [sys.executable, "-S", "-c", code],
            env={**env, "PYTHONPATH": pythonpath},
            cwd=tmp_path,  # `-c` puts the working directory first on sys.path
            capture_output=True,
            text=True,
            timeout=60,
        )

    installed, in_checkout = help_text(site), help_text()
    assert installed.returncode == 0 and in_checkout.returncode == 0, installed.stderr + in_checkout.stderr
    assert re.search(r"│ infra\b", in_checkout.stdout) and not re.search(r"│ infra\b", installed.stdout)
    assert re.search(r"│ migrate\b", installed.stdout) and re.search(r"│ topics\b", installed.stdout)
    # No other code reaches for repository files by a path relative to the package.
    sources = [*(ROOT / "leadstream_cli").glob("*.py"), *(ROOT / "services").rglob("*.py")]
    reaching = [
        str(p.relative_to(ROOT))
        for p in sources
        if "parents[1]" in p.read_text() and p.name != "checkout.py" and "/migrations/" not in str(p)
    ]
    assert reaching == []


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
        "requirements/runtime.txt",
        "requirements/analytics.txt",
        "schemas/pyproject.toml",
        "schemas/README.md",  # the schemas distribution's readme, read by its build
        "schemas/src/leadstream_schemas/py.typed",
        "leadstream_cli/main.py",
        "services/runtime/identity_migrations/script.py.mako",
        "services/console/package-lock.json",
        "services/console/templates/base.html",
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
        "services/console/node_modules/htmx.org/dist/htmx.min.js",
    ]
    assert [p for p in unwanted if in_context(p)] == []
