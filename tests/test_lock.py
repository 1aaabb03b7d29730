"""Reproducible installs (issue #22): every dependency pyproject.toml declares (runtime and every
extra the tests use) is pinned in requirements.lock, which make and CI install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    names = {norm(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in reqs}
    return names - {"bridgehead"}


def pinned(text: str) -> dict[str, str]:
    return {
        norm(m.group(1)): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    }


def unpinned(lock_text: str) -> list[str]:
    return sorted(declared() - set(pinned(lock_text)))


def test_every_declared_dependency_is_pinned():
    assert unpinned((ROOT / "requirements.lock").read_text()) == []
    assert "requirements.lock" in (ROOT / "Makefile").read_text()


def test_twin_a_dependency_missing_from_the_lock_is_caught():
    text = (ROOT / "requirements.lock").read_text()
    stripped = re.sub(r"^temporalio==\S+\n", "", text, flags=re.M)
    assert unpinned(stripped) == ["temporalio"]
