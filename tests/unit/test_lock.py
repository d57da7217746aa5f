"""The lock files are what the image installs and what the suite ran against.

``requirements.lock`` (the image's dependencies) and ``requirements-dev.lock`` (with the stack,
bench and test tools, which ``make install`` installs) pin every package to one version with the
hashes of its files. These tests fail when pyproject.toml gains a dependency the locks lack, when
the two locks disagree, when a line is unpinned or unhashed, or when the environment the tests
run in differs from the lock (run ``make lock``, then ``make install``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)")


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text("utf-8").splitlines():
        if match := PIN.match(line):
            found[canonicalize_name(match["name"])] = match["version"]
    return found


def requirement_blocks(lock: Path) -> list[str]:
    """Each requirement with its continuation lines (its hashes)."""
    blocks: list[str] = []
    for line in lock.read_text("utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith((" ", "\t")) and blocks:
            blocks[-1] += "\n" + line
        else:
            blocks.append(line)
    return blocks


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    names = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    if extra:
        for group in ("stack", "bench", extra):
            names |= {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"][group]}
    return names - {"wabridge"}


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_line_is_pinned_and_hashed_and_names_no_machine_path(lock: Path) -> None:
    blocks = requirement_blocks(lock)
    assert len(blocks) > 20
    for block in blocks:
        assert PIN.match(block), f"not pinned with ==: {block.splitlines()[0]}"
        assert "--hash=sha256:" in block, f"no hash: {block.splitlines()[0]}"
    text = lock.read_text("utf-8")
    for machine_specific in ("file://", "--find-links", "--index-url", "/tmp/", "/work/"):
        assert machine_specific not in text, machine_specific


def test_every_declared_dependency_is_locked() -> None:
    assert declared() - set(pins(RUNTIME_LOCK)) == set()
    assert declared("dev") - set(pins(DEV_LOCK)) == set()


def test_the_two_locks_agree_on_every_shared_package() -> None:
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    assert {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version} == {}


def test_the_suite_runs_on_exactly_the_locked_versions() -> None:
    differing = {}
    for name, version in pins(DEV_LOCK).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differing[name] = (version, installed)
    assert differing == {}, "installed versions differ from requirements-dev.lock: run `make install`"
