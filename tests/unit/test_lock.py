"""The locks (requirements.txt, requirements-dev.txt) pin the whole tree, follow pyproject and match this venv.

`make lock` writes them with uv from pyproject.toml; `make install` installs them with plain pip. These checks read
the files only, plus importlib.metadata for what the running interpreter has installed.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

RUNTIME_LOCK = ROOT / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"
LOCKS = (RUNTIME_LOCK, DEV_LOCK)
# name==version, optionally followed by environment markers; nothing else (no ranges, URLs or options).
PINNED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)\s*(;\s*\S.*)?$")


def requirement_lines(path: Path) -> list[str]:
    """The lines of a requirements file that are neither blank nor comments (uv's `# via` notes are comments)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def pins(path: Path) -> dict[str, str]:
    """Canonical package name → pinned version of a lock."""
    found: dict[str, str] = {}
    for line in requirement_lines(path):
        match = PINNED.match(line)
        assert match, f"{path.name}: not name==version: {line!r}"
        found[canonicalize_name(match["name"])] = match["version"]
    return found


def pyproject() -> dict:
    """pyproject.toml, parsed."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def direct(requirements: list[str]) -> dict[str, str]:
    """Canonical name → the exact version of pyproject's `==` requirements."""
    versions: dict[str, str] = {}
    for text in requirements:
        requirement = Requirement(text)
        (specifier,) = requirement.specifier  # one specifier each: pyproject pins its direct dependencies
        assert specifier.operator == "==", f"pyproject should pin {text} with =="
        versions[canonicalize_name(requirement.name)] = specifier.version
    return versions


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_line_is_name_equals_version(lock: Path) -> None:
    assert pins(lock), f"{lock.name} locks nothing"  # pins() asserts the form of every line


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_lock_names_how_it_was_made(lock: Path) -> None:
    header = lock.read_text(encoding="utf-8").split("\n", 8)[:8]
    assert any("uv pip compile" in line for line in header)
    assert any("make lock" in line for line in header)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_no_cuda_stack_in_the_lock(lock: Path) -> None:
    locked = pins(lock)
    assert not [name for name in locked if name.startswith("nvidia-")]
    excluded = {canonicalize_name(line) for line in requirement_lines(ROOT / "lock-excludes.txt")}
    assert excluded & set(locked) == set()
    assert "torch" in pins(RUNTIME_LOCK)  # torch itself stays locked: its CPU build satisfies torch==2.13.0


def test_runtime_lock_holds_every_direct_dependency_at_its_pin() -> None:
    locked = pins(RUNTIME_LOCK)
    for name, version in direct(pyproject()["project"]["dependencies"]).items():
        assert locked.get(name) == version, f"{name}: pyproject {version}, requirements.txt {locked.get(name)}"


def test_dev_lock_holds_every_dev_extra_at_its_pin() -> None:
    locked = pins(DEV_LOCK)
    for name, version in direct(pyproject()["project"]["optional-dependencies"]["dev"]).items():
        assert locked.get(name) == version, f"{name}: pyproject {version}, requirements-dev.txt {locked.get(name)}"


def test_the_two_locks_agree_where_they_overlap() -> None:
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    differ = {name: (runtime[name], dev[name]) for name in runtime.keys() & dev.keys() if runtime[name] != dev[name]}
    assert differ == {}


def test_this_venv_has_exactly_the_locked_versions() -> None:
    """What `make install` put into the running venv is what the locks say (local labels such as +cpu aside)."""
    locked = {**pins(RUNTIME_LOCK), **pins(DEV_LOCK)}
    wrong = {}
    for name, version in sorted(locked.items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            wrong[name] = (version, "not installed")
            continue
        if Version(installed).public != Version(version).public:
            wrong[name] = (version, installed)
    assert wrong == {}, "locked vs installed (run make install): " + ", ".join(
        f"{name} {want} != {have}" for name, (want, have) in wrong.items()
    )
