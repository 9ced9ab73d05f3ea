"""The contract package as a release: version, CHANGELOG and frozen schemas agree; the models are checked against
every release (backward transitive); the package builds a wheel and an sdist that carry the contract."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from leadstream_schemas.compat import check_releases
from leadstream_schemas.releases import (
    CHANGELOG,
    RELEASES_DIR,
    changelog_entries,
    package_version,
    problems,
    released,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_ROOT = ROOT / "schemas"
REPLIED = "leadstream.lead.replied.v1.json"


def copy_contract(tmp: Path) -> Path:
    root = tmp / "schemas"
    root.mkdir(parents=True)
    for name in ("pyproject.toml", CHANGELOG):
        shutil.copy(SCHEMAS_ROOT / name, root / name)
    shutil.copytree(SCHEMAS_ROOT / "jsonschema", root / "jsonschema")
    shutil.copytree(SCHEMAS_ROOT / RELEASES_DIR, root / RELEASES_DIR)
    return root


def unreleased_copy(tmp: Path) -> Path:
    """A copy of the contract whose version is not released yet: the next patch version, with its CHANGELOG entry,
    when the checkout's own version is released (as right after ``make schemas-release``)."""
    root = copy_contract(tmp)
    version = package_version(root)
    if version in released(root):
        major, minor, patch = (int(part) for part in version.split("."))
        bumped = f"{major}.{minor}.{patch + 1}"
        pyproject = root / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace(f'version = "{version}"', f'version = "{bumped}"', 1))
        text = (root / CHANGELOG).read_text()
        at = text.index("\n## ") + 1
        (root / CHANGELOG).write_text(f"{text[:at]}## {bumped} (unreleased)\n\n- A change.\n\n{text[at:]}")
        assert package_version(root) == bumped
    return root


def test_the_committed_contract_is_a_consistent_release_history() -> None:
    assert problems(SCHEMAS_ROOT) == []
    assert "1.0.0" in released(SCHEMAS_ROOT)
    assert package_version(SCHEMAS_ROOT) in changelog_entries(SCHEMAS_ROOT)


def test_the_models_are_compatible_with_every_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_releases(SCHEMAS_ROOT) == 0
    out = capsys.readouterr().out
    assert all(f"compatible with release {v}" in out for v in released(SCHEMAS_ROOT))


def test_a_break_against_an_older_release_fails_even_when_the_newest_is_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_contract(tmp_path)
    older = root / RELEASES_DIR / "0.9.0"
    shutil.copytree(root / "jsonschema", older)
    schema = json.loads((older / REPLIED).read_text())
    schema["properties"]["mood"] = {"type": "string"}  # 0.9.0 had a field the models no longer have
    (older / REPLIED).write_text(json.dumps(schema))

    assert check_releases(root) == 1
    err = capsys.readouterr().err
    assert "against release 0.9.0" in err and "mood" in err


def test_a_released_version_is_frozen(tmp_path: Path) -> None:
    root = unreleased_copy(tmp_path)
    version = package_version(root)
    (root / CHANGELOG).write_text((root / CHANGELOG).read_text().replace(f"## {version} (unreleased)", ""))
    assert any(f"'## {version} (unreleased)'" in p for p in problems(root))

    root = unreleased_copy(tmp_path / "again")
    assert snapshot(root, today="2026-12-05") == version
    assert changelog_entries(root)[version] == "2026-12-05"
    assert problems(root) == []
    with pytest.raises(FileExistsError):
        snapshot(root)
    (root / "jsonschema" / REPLIED).write_text("{}")  # a change after the release without a new version
    assert any(f"{version} is released" in p and REPLIED in p for p in problems(root))


def test_the_package_builds_a_wheel_and_an_sdist_with_the_version_and_the_contract(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS_ROOT, tmp_path / "schemas", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    uv = Path(sys.executable).with_name("uv")
    subprocess.run(
        [
            str(uv),
            "build",
            "--no-build-isolation",
            "--python",
            sys.executable,
            str(tmp_path / "schemas"),
            "--out-dir",
            str(tmp_path / "dist"),
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    version = package_version(SCHEMAS_ROOT)
    wheel = tmp_path / "dist" / f"leadstream_schemas-{version}-py3-none-any.whl"
    sdist = tmp_path / "dist" / f"leadstream_schemas-{version}.tar.gz"
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"leadstream_schemas-{version}.dist-info/METADATA").decode()
        assert f"\nVersion: {version}\n" in metadata
        assert "leadstream_schemas/envelope.py" in zf.namelist()
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {CHANGELOG, "asyncapi.yaml", f"jsonschema/{REPLIED}", f"examples/{REPLIED}"} <= names
    assert f"{RELEASES_DIR}/1.0.0/{REPLIED}" in names
