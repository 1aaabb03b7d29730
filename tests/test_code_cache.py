"""The ``workflows`` package's code objects are read once per worker process
(``bridgehead.code_cache``), so the isolated sandbox's re-import for each new run executes each
module afresh without reading and unmarshalling its bytecode again (docs/benchmarks.md, session 8).

Proof: a module imported twice into fresh module tables, as the sandbox does for two runs, reads
its code from disk once, and each import is a new module of its own. Twin: Python's own loader
reads it every time."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys

import pytest

from bridgehead import code_cache
from tests.support.fresh_import import fresh


def import_fresh(name: str) -> object:
    """Import ``name`` as a new run's sandbox does: with none of the package in ``sys.modules``."""
    with fresh("workflows"):
        return importlib.import_module(name)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths whose bytecode was read (``SourceLoader.get_data`` of a ``.pyc``)."""
    seen: list[str] = []
    real = importlib.machinery.SourceFileLoader.get_data

    def get_data(self: object, path: str) -> bytes:
        if path.endswith(".pyc") and "/workflows/" in path:
            seen.append(path.rsplit("/", 1)[1].split(".")[0])
        return real(self, path)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.machinery.SourceFileLoader, "get_data", get_data)
    monkeypatch.setattr(code_cache.CachedCodeLoader, "codes", {})
    return seen


@pytest.fixture
def finder(monkeypatch: pytest.MonkeyPatch) -> code_cache.PackageCodeFinder:
    f = code_cache.PackageCodeFinder("workflows")
    monkeypatch.setattr(sys, "meta_path", [f, *[m for m in sys.meta_path if m is not f]])
    return f


def test_two_runs_import_a_module_afresh_from_one_read(finder, reads):
    first = import_fresh("workflows._options")
    second = import_fresh("workflows._options")
    assert first is not second  # each run executes the module in a namespace of its own
    assert first.__dict__ is not second.__dict__
    assert isinstance(first.__spec__.loader, code_cache.CachedCodeLoader)
    assert first.__file__ == second.__file__
    assert reads.count("_options") == 1, reads
    # Another package is left to Python's own finders.
    assert finder.find_spec("json") is None


def test_install_is_once_per_process(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    a = code_cache.install("workflows")
    b = code_cache.install("workflows")
    assert a is b and sys.meta_path[0] is a
    assert sum(isinstance(m, code_cache.PackageCodeFinder) for m in sys.meta_path) == 1


def test_twin_python_s_own_loader_reads_the_module_for_every_run(reads, monkeypatch):
    monkeypatch.setattr(
        sys,
        "meta_path",
        [m for m in sys.meta_path if not isinstance(m, code_cache.PackageCodeFinder)],
    )
    import_fresh("workflows._options")
    import_fresh("workflows._options")
    assert reads.count("_options") == 2, reads


async def replay_a_lifecycle_twice(reads: list[str]) -> None:
    """Replay a stored lifecycle twice with the isolated sandbox (each replay builds a worker,
    which checks every workflow in a sandbox, then runs the history); ``reads`` counts those two
    only. A first replay is left out: it also reads the modules for the SDK's build id, once per
    process, outside the sandbox."""
    from tests.support.replay_corpus import HISTORIES, load, replay_failure

    history = load(HISTORIES / "ClusterLifecycle--cancel.json")
    assert await replay_failure(history) is None
    del reads[:]
    for _ in range(2):
        assert await replay_failure(history) is None


async def test_the_sandbox_s_imports_for_two_replayed_runs_read_each_module_once(finder, reads):
    """The isolated sandbox goes through ``sys.meta_path``: two replays of a stored lifecycle, each
    importing the package afresh, read each module's bytecode once between them."""
    await replay_a_lifecycle_twice(reads)
    assert any(p.endswith("/workflows/clusters.py") for p in code_cache.CachedCodeLoader.codes)
    assert reads.count("clusters") <= 1, reads
    assert len(reads) == len(set(reads)), reads


async def test_twin_without_the_finder_each_replayed_run_reads_the_modules_again(
    reads, monkeypatch
):
    monkeypatch.setattr(
        sys,
        "meta_path",
        [m for m in sys.meta_path if not isinstance(m, code_cache.PackageCodeFinder)],
    )
    await replay_a_lifecycle_twice(reads)
    assert reads.count("clusters") >= 2, reads
