"""The ``workflows`` package's code objects, read from disk once per worker process.

Temporal's isolated sandbox imports the package again for every new workflow run (and for every
run replayed after leaving the cache). Each import found the module, checked its source's time
stamp, read its ``.pyc`` and unmarshalled it: in the throughput benchmark a quarter of the event
loop's time went to creating sandbox instances, and reading and unmarshalling bytecode was about a
third of that (docs/benchmarks.md, session 8).

:func:`install` puts a finder first on ``sys.meta_path`` for the package only. It finds modules as
Python does and hands them a loader that keeps each module's code object after the first read.
A code object is immutable: every run still executes the module afresh, in its own namespace, under
the sandbox's restrictions; only the disk read and the unmarshalling are shared. A worker process
also keeps running the code it started with: a file changed on disk while it runs reaches new runs
only after a restart, as it reaches the workflow classes the worker registered at start.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import CodeType, ModuleType
from typing import Any

_lock = threading.Lock()


class CachedCodeLoader(importlib.machinery.SourceFileLoader):
    """A ``SourceFileLoader`` whose ``get_code`` reads a module once per process."""

    codes: dict[str, CodeType] = {}

    def get_code(self, fullname: str) -> CodeType:
        code = self.codes.get(self.path)
        if code is None:
            code = super().get_code(fullname)
            if code is None:  # pragma: no cover - a source file always has code
                raise ImportError(f"no code for {fullname}", name=fullname)
            with _lock:
                code = self.codes.setdefault(self.path, code)
        return code


class PackageCodeFinder(importlib.abc.MetaPathFinder):
    """Finds ``package`` and its submodules as Python's path finder does, with cached code."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> Any:
        if fullname != self.package and not fullname.startswith(self.package + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if spec is None or type(loader) is not importlib.machinery.SourceFileLoader:
            return spec
        spec.loader = CachedCodeLoader(loader.name, loader.path)
        return spec


def install(package: str = "workflows") -> PackageCodeFinder:
    """Put the finder for ``package`` first on ``sys.meta_path`` (once per process)."""
    for finder in sys.meta_path:
        if isinstance(finder, PackageCodeFinder) and finder.package == package:
            return finder
    finder = PackageCodeFinder(package)
    sys.meta_path.insert(0, finder)
    return finder
