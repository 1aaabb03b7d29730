"""Workflow code is deterministic by construction, checked on the source: ``workflows/`` and every
``bridgehead`` module it imports (directly or through each other) import only pure modules and
call no clock, randomness, environment or file. Temporal's sandbox catches such a call only when a
run reaches it, and not at all when the ``workflows`` package is shared between runs (setting
``workflow_sandbox=shared``, the memory-saving mode for large workers): this check covers every
line, whichever mode a worker runs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Top-level modules workflow code may import. ``temporalio`` only for its workflow-side parts.
PURE = {
    "__future__",
    "abc",
    "annotated_types",
    "asyncio",  # Temporal's event loop: asyncio.sleep and wait are durable timers and conditions
    "bridgehead",
    "collections",
    "contextlib",
    "copy",
    "dataclasses",
    "datetime",  # the types; now() / today() are refused below
    "decimal",
    "enum",
    "fnmatch",
    "functools",
    "hashlib",
    "ipaddress",
    "itertools",
    "json",
    "math",
    "operator",
    "pydantic",
    "pydantic_core",
    "re",
    "string",
    "textwrap",
    "typing",
    "workflows",
}
TEMPORAL_PARTS = {"temporalio", "temporalio.workflow", "temporalio.exceptions", "temporalio.common"}
#: ``bridgehead`` modules that do I/O (environment, logging sinks, clients): never from a workflow.
IMPURE_HOME = {
    "bridgehead.settings",
    "bridgehead.client",
    "bridgehead.converter",
    "bridgehead.logging",
}
#: Calls that read the clock, randomness, the environment or files (``workflow.now()`` is the
#: deterministic clock; a field named ``now`` is data, not a call).
IMPURE_ATTRS = {"now", "utcnow", "today", "getenv", "urandom", "uuid1", "uuid4"}
IMPURE_NAMES = {"open", "input", "print", "eval", "exec", "__import__"}


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def _imports(tree: ast.AST, here: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                pkg = here.rsplit(".", node.level)[0]
                mod = f"{pkg}.{node.module}" if node.module else pkg
            else:
                mod = node.module or ""
            out.append(mod)
            # ``from bridgehead import ids``: the submodule is imported too.
            out += [f"{mod}.{a.name}" for a in node.names if _module_file(f"{mod}.{a.name}")]
    return out


def problems_in(source: str, where: str, module: str) -> tuple[list[str], list[str]]:
    """(problems, project modules imported) of one module's source."""
    tree = ast.parse(source)
    found = []
    project = []
    for mod in _imports(tree, module):
        top = mod.split(".")[0]
        if top == "temporalio":
            if mod not in TEMPORAL_PARTS:
                found.append(f"{where}: imports {mod} (only temporalio.workflow/exceptions/common)")
        elif top not in PURE:
            found.append(f"{where}: imports {mod}")
        elif mod in IMPURE_HOME:
            found.append(f"{where}: imports {mod} (I/O)")
        elif top in ("bridgehead", "workflows") and _module_file(mod):
            project.append(mod)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in IMPURE_ATTRS:
            owner = f.value.id if isinstance(f.value, ast.Name) else ""
            if owner != "workflow":
                found.append(f"{where}:{node.lineno}: {ast.unparse(f)}")
        elif isinstance(f, ast.Name) and f.id in IMPURE_NAMES:
            found.append(f"{where}:{node.lineno}: {f.id}()")
    return found, project


def workflow_code_problems(root: Path = ROOT, extra: dict[str, str] | None = None) -> list[str]:
    """Every problem in ``workflows/`` and the project modules it reaches. ``extra``: module name
    -> source, added to the workflows package (the twins plant a module this way)."""
    sources = {
        f"workflows.{p.stem}" if p.stem != "__init__" else "workflows": p.read_text()
        for p in sorted((root / "workflows").glob("*.py"))
    }
    sources.update(extra or {})
    queue = list(sources)
    seen: set[str] = set()
    found: list[str] = []
    while queue:
        mod = queue.pop()
        if mod in seen:
            continue
        seen.add(mod)
        if mod in sources:
            text = sources[mod]
        else:
            path = _module_file(mod)
            if path is None:
                continue
            text = path.read_text()
        problems, reached = problems_in(text, mod, mod)
        found += problems
        queue += [r for r in reached if r not in seen]
    return sorted(set(found))


def test_workflow_code_imports_only_pure_modules_and_calls_no_clock_or_environment():
    assert workflow_code_problems() == []


def test_the_check_reaches_the_bridgehead_modules_workflows_import():
    """Positive control: what the check walks includes the shared home, not only workflows/."""
    planted = "from bridgehead import ids\n"
    assert workflow_code_problems(extra={"workflows._planted": planted}) == []
    # ...and a problem two imports away is found.
    assert problems_in("import bridgehead.settings\n", "x", "x")[0] == [
        "x: imports bridgehead.settings (I/O)"
    ]


def test_twin_a_clock_randomness_or_io_in_workflow_code_is_caught():
    planted = (
        "import random\n"
        "import boto3\n"
        "from datetime import datetime\n"
        "from temporalio.client import Client\n"
        "from bridgehead.settings import get_settings\n"
        "def f():\n"
        "    t = datetime.now()\n"
        "    return open('x'), random.random(), t\n"
    )
    found = workflow_code_problems(extra={"workflows._planted": planted})
    assert found == [
        "workflows._planted: imports boto3",
        "workflows._planted: imports bridgehead.settings (I/O)",
        "workflows._planted: imports random",
        "workflows._planted: imports temporalio.client (only temporalio.workflow/exceptions/common)",
        "workflows._planted:7: datetime.now",
        "workflows._planted:8: open()",
    ]


def test_twin_workflow_now_is_allowed_but_a_datetime_now_elsewhere_is_not():
    ok = "from temporalio import workflow\ndef f():\n    return workflow.now()\n"
    bad = "import datetime\ndef f():\n    return datetime.datetime.now()\n"
    assert problems_in(ok, "ok", "workflows.ok")[0] == []
    assert problems_in(bad, "bad", "workflows.bad")[0] == ["bad:3: datetime.datetime.now"]
