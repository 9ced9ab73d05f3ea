"""Released versions of the contract, and the rules that keep them honest.

A release of ``leadstream-schemas`` freezes its JSON Schemas in ``releases/<version>/`` (committed, so a shallow
clone checks against every release without fetching history or tags); whoever publishes it also tags the release
commit ``schemas-v<version>``, which nothing here needs. The models in
code must stay backward compatible with *every* release (transitive), not only the newest: a field dropped in 1.2
and re-added with another type in 1.3 breaks readers of 1.1 records even when 1.3 looks fine next to 1.2.

    python -m leadstream_schemas.releases check      # CHANGELOG, version and snapshots agree (make schemas-check)
    python -m leadstream_schemas.releases snapshot   # release the version in pyproject.toml (make schemas-release)

A ``schemas-v*`` tag present in the clone whose version has no committed snapshot (a release tagged before its
snapshot was committed) is read from git as well; ``git fetch --tags`` brings tags into a shallow clone.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .generate import JSONSCHEMA_DIR, default_root

RELEASES_DIR = "releases"
CHANGELOG = "CHANGELOG.md"
TAG_PREFIX = "schemas-v"
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_HEADING = re.compile(r"^## (\d+\.\d+\.\d+) \((unreleased|\d{4}-\d{2}-\d{2})\)\s*$", re.M)

Schema = dict[str, Any]


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.2.3"`` -> ``(1, 2, 3)``; ValueError for anything else."""
    if not _VERSION.match(text):
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {text!r}")
    return tuple(int(part) for part in text.split("."))


def package_version(root: Path) -> str:
    """The version in ``root/pyproject.toml``: the one the next wheel and sdist carry."""
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def released(root: Path) -> list[str]:
    """The versions with a committed snapshot, oldest first."""
    folder = root / RELEASES_DIR
    names = [p.name for p in folder.iterdir() if p.is_dir() and _VERSION.match(p.name)] if folder.is_dir() else []
    return sorted(names, key=parse_version)


def changelog_entries(root: Path) -> dict[str, str]:
    """``{version: "unreleased" | date}`` from the CHANGELOG's ``## X.Y.Z (...)`` headings."""
    path = root / CHANGELOG
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return {m.group(1): m.group(2) for m in _HEADING.finditer(text)}


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None


def tags_without_snapshot(root: Path) -> list[str]:
    """``schemas-v*`` tags in this clone whose version has no committed snapshot (empty outside a git checkout)."""
    listing = _git(root, "tag", "--list", f"{TAG_PREFIX}*") or ""
    have = set(released(root))
    tags = [t for t in listing.split() if _VERSION.match(t.removeprefix(TAG_PREFIX))]
    missing = [t for t in tags if t.removeprefix(TAG_PREFIX) not in have]
    return sorted(missing, key=lambda t: parse_version(t.removeprefix(TAG_PREFIX)))


def baselines(root: Path) -> dict[str, Path | str]:
    """Every released contract to check against: ``{label: snapshot folder or git tag}``, oldest first."""
    out: dict[str, Path | str] = {f"release {v}": root / RELEASES_DIR / v for v in released(root)}
    out.update({f"tag {t}": t for t in tags_without_snapshot(root)})
    return out


def _same_files(a: Path, b: Path) -> list[str]:
    names = {p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")}
    return sorted(
        n for n in names if not (a / n).exists() or not (b / n).exists() or (a / n).read_bytes() != (b / n).read_bytes()
    )


def problems(root: Path) -> list[str]:
    """What is inconsistent between pyproject's version, the CHANGELOG and the snapshots (empty when fine)."""
    out: list[str] = []
    version = package_version(root)
    entries = changelog_entries(root)
    versions = released(root)
    try:
        parse_version(version)
    except ValueError as exc:
        return [f"pyproject.toml: {exc}"]
    if version not in entries:
        out.append(f"{CHANGELOG} has no '## {version} (unreleased)' or '## {version} (YYYY-MM-DD)' entry")
    for v in versions:
        if entries.get(v, "unreleased") == "unreleased":
            out.append(f"{RELEASES_DIR}/{v} is released but {CHANGELOG} does not date its entry")
    if versions and parse_version(version) < parse_version(versions[-1]):
        out.append(f"pyproject.toml says {version}, older than the newest release {versions[-1]}")
    if version in versions:
        changed = _same_files(root / JSONSCHEMA_DIR, root / RELEASES_DIR / version)
        if changed:
            out.append(
                f"{version} is released: its schemas are frozen, but {', '.join(changed[:5])} changed; "
                f"bump the version in pyproject.toml and add an '(unreleased)' entry to {CHANGELOG}"
            )
    elif entries.get(version) not in (None, "unreleased"):
        out.append(f"{CHANGELOG} dates {version} but {RELEASES_DIR}/{version} does not exist (make schemas-release)")
    return out


def snapshot(root: Path, today: str | None = None) -> str:
    """Release pyproject's version: freeze ``jsonschema/`` in ``releases/<version>/`` and date its CHANGELOG entry."""
    version = package_version(root)
    parse_version(version)
    target = root / RELEASES_DIR / version
    if target.exists():
        raise FileExistsError(f"{version} is already released ({target}); bump the version first")
    entries = changelog_entries(root)
    if entries.get(version) != "unreleased":
        raise ValueError(f"{CHANGELOG} needs a '## {version} (unreleased)' entry describing the release")
    shutil.copytree(root / JSONSCHEMA_DIR, target)
    path = root / CHANGELOG
    date = today or datetime.now(UTC).date().isoformat()
    text = path.read_text(encoding="utf-8").replace(f"## {version} (unreleased)", f"## {version} ({date})", 1)
    path.write_text(text, encoding="utf-8")
    return version


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadstream_schemas.releases", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["check", "snapshot"])
    parser.add_argument("--root", type=Path, help="the schemas/ folder (default: found from this file)")
    args = parser.parse_args(argv)
    root: Path = args.root or default_root()
    if args.command == "snapshot":
        try:
            version = snapshot(root)
        except (OSError, ValueError) as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"released {version}: commit {RELEASES_DIR}/{version} and {CHANGELOG}, then tag {TAG_PREFIX}{version}")
        return 0
    found = problems(root)
    for line in found:
        print(f"release check: {line}", file=sys.stderr)
    if not found:
        print(f"leadstream-schemas {package_version(root)}; releases: {', '.join(released(root)) or 'none'}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
