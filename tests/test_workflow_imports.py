"""A workflow module imports no other workflow type unless it starts that type as a child.

Why it matters: the isolated sandbox imports a run's module, and everything it imports, again for
every new run and every run replayed after leaving the cache. A helper taken from another workflow
module brings that module's workflow classes with it: their ``@workflow.defn`` checks (signatures,
type hints) run again in each run, and their classes stay in each cached run's memory. A cluster
lifecycle imported ``ProvisionRegion`` and ``CleanupRegion`` (and ``workflows.foundations``) for one
helper, ``request_token``; with that helper in ``workflows._common`` a new lifecycle's sandbox
costs about 1.3 ms less CPU and 18 KiB less memory (docs/benchmarks.md, session 10).

Proof: each module of ``workflows`` is imported fresh (as a new run's sandbox does) and the other
workflow types it pulled in are listed; only the children a workflow starts by class are allowed.
Twin: a planted package whose workflow takes a helper from another workflow's module is caught."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import workflows
from tests.support.fresh_import import fresh

#: Workflow types a module may import: the children it starts by class, with why.
ALLOWED = {
    # OnboardOrganization starts VerifyRole as a child, by class (its input and result types are
    # checked against the class); the module brings ReverifyOrganization along.
    "workflows.onboarding": {"workflows.verification"},
}


def workflow_types_pulled_in(package: str, module: str) -> dict[str, list[str]]:
    """Import ``module`` with nothing of ``package`` loaded; the workflow classes defined in the
    package's *other* modules that came with it, by module."""
    with fresh(package):
        importlib.import_module(module)
        found: dict[str, list[str]] = {}
        for name, mod in list(sys.modules.items()):
            if name.split(".")[0] != package or name == module:
                continue
            classes = sorted(
                k
                for k, v in vars(mod).items()
                if isinstance(v, type)
                and getattr(v, "__module__", None) == name
                and hasattr(v, "__temporal_workflow_definition")
            )
            if classes:
                found[name] = classes
        return found


def unexpected(package: str, allowed: dict[str, set[str]]) -> dict[str, dict[str, list[str]]]:
    pkg = importlib.import_module(package)
    out = {}
    for info in pkgutil.iter_modules(pkg.__path__, package + "."):
        pulled = workflow_types_pulled_in(package, info.name)
        extra = {m: c for m, c in pulled.items() if m not in allowed.get(info.name, set())}
        if extra:
            out[info.name] = extra
    return out


def test_no_workflow_module_imports_another_workflow_type() -> None:
    assert unexpected("workflows", ALLOWED) == {}
    # The check looked at every workflow module, and sees the allowed child import.
    assert len(list(pkgutil.iter_modules(workflows.__path__))) >= 10
    assert workflow_types_pulled_in("workflows", "workflows.onboarding") == {
        "workflows.verification": ["ReverifyOrganizationWorkflow", "VerifyRoleWorkflow"]
    }


def test_a_cluster_lifecycle_imports_no_region_workflow() -> None:
    assert workflow_types_pulled_in("workflows", "workflows.clusters") == {}
    with fresh("workflows"):
        importlib.import_module("workflows.clusters")
        assert "workflows.regions" not in sys.modules
        assert "workflows.foundations" not in sys.modules


_PLANTED = {
    "__init__.py": "",
    "helpers.py": "def token(step: str) -> str:\n    return 'bh-' + step\n",
    "regions.py": (
        "from temporalio import workflow\n\n"
        "def token(step: str) -> str:\n    return 'bh-' + step\n\n"
        "@workflow.defn(name='PlantedRegion')\nclass PlantedRegion:\n"
        "    @workflow.run\n    async def run(self) -> None:\n        return None\n"
    ),
    "clusters.py": (
        "from temporalio import workflow\n\n"
        "from plantedwf.regions import token  # the defect: a helper from a workflow module\n\n"
        "@workflow.defn(name='PlantedCluster')\nclass PlantedCluster:\n"
        "    @workflow.run\n    async def run(self) -> str:\n        return token('x')\n"
    ),
}


def plant(root: Path, package: str, helper_from: str) -> None:
    """The planted package under ``root``, its cluster workflow taking ``token`` from
    ``helper_from`` (``regions``: the defect; ``helpers``: a module of helpers)."""
    pkg = root / package
    pkg.mkdir()
    for name, text in _PLANTED.items():
        (pkg / name).write_text(
            text.replace("plantedwf.regions", f"PKG.{helper_from}")
            .replace("plantedwf", "PKG")
            .replace("PKG", package)
        )


def test_twin_a_helper_taken_from_a_workflow_module_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two packages of their own (no module rewritten in place, no bytecode reused), removed from
    # sys.modules afterwards.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    plant(tmp_path, "plantedwf", "regions")
    plant(tmp_path, "plantedwf_ok", "helpers")
    with fresh("plantedwf"), fresh("plantedwf_ok"):
        assert unexpected("plantedwf", {}) == {
            "plantedwf.clusters": {"plantedwf.regions": ["PlantedRegion"]}
        }
        # The same helper from a module of helpers passes.
        assert unexpected("plantedwf_ok", {}) == {}
