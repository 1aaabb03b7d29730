"""Optional linters and scanners used by the policy and template tests.

Locally a missing tool skips its tests with the reason; when ``CI`` is set (CI runs
``bash .ci/run`` with CI=true) a missing tool FAILS them: a scan that did not run must not
look like a scan that passed.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

from tests.support.requirements import missing

ROOT = Path(__file__).resolve().parents[2]


def _missing(what: str, how: str) -> None:
    missing(f"{what} is not installed ({how})")  # the one place that decides skip vs fail


def require_module(
    name: str, how: str = "part of the dev extra: pip install -e '.[dev]'"
) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"Python package {name}", how)
        raise  # unreachable: _missing always raises


def require_executable(name: str, *candidates: Path, how: str) -> str:
    """The path of a command-line tool: ``$BRIDGEHEAD_<NAME>``, the given candidates, then PATH."""
    env = os.environ.get(f"BRIDGEHEAD_{name.upper()}")
    for c in [Path(env)] if env else []:
        if c.exists():
            return str(c)
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which(name)
    if found:
        return found
    _missing(f"{name}", how)
    raise AssertionError("unreachable")
