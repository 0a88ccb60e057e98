"""The package as users get it: its version, the files the wheel holds, what the sdist carries.

The file checks need the package installed from a wheel (``scripts/test`` runs the suite that way)
and ``BACKBEAT_DIST``, the folder holding the wheel and sdist; run from an editable checkout they
are skipped, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import backbeat

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "backbeat"
INSTALLED = Path(backbeat.__file__).parent
SKIPPED = {"__pycache__"}


def package_files(top: Path) -> set[str]:
    return {
        path.relative_to(top).as_posix()
        for path in top.rglob("*")
        if path.is_file() and not SKIPPED.intersection(path.parts) and path.suffix != ".pyc"
    }


def dist_file(pattern: str) -> Path:
    folder = os.environ.get("BACKBEAT_DIST")
    if not folder:
        pytest.skip("BACKBEAT_DIST (the folder of the built wheel and sdist) is not set")
    found = sorted((ROOT / folder).glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, found {found}"
    return found[0]


def test_backbeat_version_is_the_metadata_version_and_the_changelog_release() -> None:
    command = shutil.which("backbeat", path=str(Path(sys.executable).parent))
    assert command is not None
    printed = subprocess.run([command, "--version"], capture_output=True, text=True, check=True, timeout=60)
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert printed.stdout.strip() == version("backbeat")
    assert released, "CHANGELOG.md has no release heading (## [x.y.z] - date)"
    assert released[0] == version("backbeat"), "the newest CHANGELOG.md release is not the package's version"


def test_installed_package_holds_every_source_file() -> None:
    if INSTALLED == SOURCE:
        pytest.skip("backbeat is imported from the checkout (editable), not from an installed wheel")
    missing = package_files(SOURCE) - package_files(INSTALLED)
    assert not missing, f"files of src/backbeat missing from the installed package: {sorted(missing)}"
    assert {"py.typed", "stores/redis/scripts/claim.lua"} <= package_files(INSTALLED)


def test_wheel_holds_the_package_data() -> None:
    with zipfile.ZipFile(dist_file("backbeat-*.whl")) as wheel:
        names = {name.removeprefix("backbeat/") for name in wheel.namelist() if name.startswith("backbeat/")}
    missing = package_files(SOURCE) - names
    assert not missing, f"files of src/backbeat missing from the wheel: {sorted(missing)}"


def test_sdist_holds_tests_docs_and_the_changelog() -> None:
    with tarfile.open(dist_file("backbeat-*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = {"CHANGELOG.md", "mkdocs.yml", "LICENSE", "README.md", "requirements-lock.txt"}
    assert expected <= names, sorted(expected - names)
    for folder in ("tests", "docs", "examples"):
        tracked = {path.relative_to(ROOT).as_posix() for path in package_files_under(ROOT / folder)}
        assert tracked <= names, f"missing from the sdist: {sorted(tracked - names)[:10]}"


def package_files_under(folder: Path) -> list[Path]:
    return [
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not SKIPPED.intersection(path.parts)
        and path.suffix not in {".pyc", ".db", ".jsonl"}
        and not path.name.endswith((".db-wal", ".db-shm"))
    ]
