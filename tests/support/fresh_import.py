"""Importing a package as a new run's sandbox does: with none of it in ``sys.modules``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType


def drop(package: str) -> dict[str, ModuleType]:
    """Remove ``package`` and its submodules from ``sys.modules``; return them."""
    gone = {k: v for k, v in sys.modules.items() if k.split(".")[0] == package}
    for k in gone:
        del sys.modules[k]
    return gone


@contextlib.contextmanager
def fresh(package: str) -> Iterator[None]:
    """Inside: nothing of ``package`` loaded, so an import executes its modules afresh.
    Afterwards: what that import loaded is dropped and the modules from before are back."""
    saved = drop(package)
    try:
        yield
    finally:
        drop(package)
        sys.modules.update(saved)
