"""The worker writes the ``workflows`` package's bytecode cache, so the isolated sandbox, which
imports the package again for every new run, loads it instead of compiling every module from source
(docs/benchmarks.md: a quarter of the worker's CPU per new run where ``PYTHONDONTWRITEBYTECODE`` is
set, as on this machine and in CI).

The proof loads each module's code the way the sandbox's import does (``SourceFileLoader.get_code``)
with compiling from source made to fail: it passes only if the cache is there and up to date.
Twins: the same check on a copy that was never warmed, and on one whose source changed after the
warm-up, reports the modules that would be compiled."""

from __future__ import annotations

import os
import shutil
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

from worker import WORKFLOWS_DIR, build_worker, warm_bytecode


class Compiled(Exception):
    pass


def modules_compiled_on_import(package: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The modules of ``package`` whose import would compile source (no usable cache)."""

    def refuse(self: SourceFileLoader, data: bytes, path: str, **kw: object) -> object:
        raise Compiled(path)

    compiled = []
    with monkeypatch.context() as m:
        m.setattr(SourceFileLoader, "source_to_code", refuse)
        for path in sorted(package.rglob("*.py")):
            try:
                SourceFileLoader(f"{package.name}.{path.stem}", str(path)).get_code(None)
            except Compiled:
                compiled.append(path.name)
    return compiled


@pytest.fixture
def copy_of_workflows(tmp_path: Path) -> Path:
    dst = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_after_the_warm_up_no_workflow_module_is_compiled(copy_of_workflows, monkeypatch):
    assert warm_bytecode(copy_of_workflows)
    assert modules_compiled_on_import(copy_of_workflows, monkeypatch) == []


def test_the_real_package_is_warmed_by_building_a_worker(monkeypatch):
    warmed: list[Path] = []
    monkeypatch.setattr("worker.warm_bytecode", lambda *a: warmed.append(WORKFLOWS_DIR) or True)
    with pytest.raises(Exception):  # noqa: B017 - no client: building fails after the warm-up
        build_worker(None, None, [], None)  # type: ignore[arg-type]
    assert warmed == [WORKFLOWS_DIR]
    assert warm_bytecode()
    assert modules_compiled_on_import(WORKFLOWS_DIR, monkeypatch) == []


def test_twin_a_package_never_warmed_is_compiled_module_by_module(copy_of_workflows, monkeypatch):
    compiled = modules_compiled_on_import(copy_of_workflows, monkeypatch)
    assert "clusters.py" in compiled
    assert len(compiled) == len(list(copy_of_workflows.glob("*.py")))


def test_twin_a_source_changed_after_the_warm_up_is_compiled_again(copy_of_workflows, monkeypatch):
    assert warm_bytecode(copy_of_workflows)
    changed = copy_of_workflows / "clusters.py"
    changed.write_text(changed.read_text() + "\n# changed\n")
    later = changed.stat().st_mtime + 10
    os.utime(changed, (later, later))
    assert modules_compiled_on_import(copy_of_workflows, monkeypatch) == ["clusters.py"]
    assert warm_bytecode(copy_of_workflows)  # the next worker start writes it again
    assert modules_compiled_on_import(copy_of_workflows, monkeypatch) == []


def test_a_package_that_cannot_be_written_is_no_error(copy_of_workflows, monkeypatch):
    def refuse(*a: object, **kw: object) -> bool:
        raise PermissionError("read-only file system")

    monkeypatch.setattr("compileall.compile_dir", refuse)
    assert warm_bytecode(copy_of_workflows) is False
