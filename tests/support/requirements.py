"""No silent skips in CI: a test that needs a tool (Chromium, Playwright, a linter, bash) skips,
saying why, on a developer's machine that lacks it; when ``CI`` is set, the same absence FAILS the
test, so a green CI run means every claim-backing test really ran.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(why: str) -> None:
    """Skip (developer machine) or fail (``CI`` set) because something required is absent."""
    if in_ci():
        pytest.fail(
            f"required in CI, but missing: {why}; CI must run this check, so a missing tool is a failure",
            pytrace=False,
        )
    pytest.skip(why)


def require_module(name: str, why: str) -> ModuleType:
    """``importlib.import_module(name)``, or :func:`missing` (usable at module level)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"{name} cannot be imported ({e}); {why}")
        raise  # unreachable: missing() always raises
