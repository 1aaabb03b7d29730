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


def _relative_base(here: str, level: int) -> str:
    """What ``from .`` (level 1), ``from ..`` (2)... name in module ``here``: a package's
    ``__init__`` is ``here`` itself, so its level 1 is itself."""
    if (ROOT / Path(*here.split(".")) / "__init__.py").exists():
        level -= 1
    return here.rsplit(".", level)[0] if level else here


def _imports(tree: ast.AST, here: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package (a package's own __init__)
                pkg = _relative_base(here, node.level)
                mod = f"{pkg}.{node.module}" if node.module else pkg
            else:
                mod = node.module or ""
            out.append(mod)
            # ``from bridgehead import ids``: the submodule is imported too.
            out += [f"{mod}.{a.name}" for a in node.names if _module_file(f"{mod}.{a.name}")]
    return out


MUTATORS = {
    "append",
    "extend",
    "insert",
    "add",
    "update",
    "setdefault",
    "pop",
    "popitem",
    "remove",
    "discard",
    "clear",
    "sort",
    "reverse",
}
#: Decorators that keep state between calls (shared between runs, and between tenants, in the
#: shared sandbox mode).
CACHES = {"cache", "lru_cache", "cached_property"}


def _bound_names(tree: ast.Module, here: str) -> tuple[dict[str, str], set[str]]:
    """(import aliases: local name -> dotted origin, module-level names assigned)."""
    aliases: dict[str, str] = {}
    module_level: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = _relative_base(here, node.level)
                mod = f"{base}.{node.module}" if node.module else base
            for a in node.names:
                aliases[a.asname or a.name] = f"{mod}.{a.name}"
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    module_level.add(n.id)
    return aliases, module_level


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


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
    aliases, module_level = _bound_names(tree, module)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for node in ast.walk(tree):
        # A clock or randomness named, called or not (``clock = datetime.now``), on anything
        # imported except Temporal's workflow module (``workflow.now()`` is its replayed clock).
        if isinstance(node, ast.Attribute) and node.attr in IMPURE_ATTRS:
            owner = _root(node.value)
            if owner in aliases and aliases[owner] != "temporalio.workflow":
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in IMPURE_NAMES:
                found.append(f"{where}:{node.lineno}: {node.func.id}()")
            elif node.func.id in ("getattr", "setattr", "delattr") and any(
                isinstance(a, ast.Constant) and a.value in IMPURE_ATTRS for a in node.args
            ):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and node.attr == "methodcaller":
            found.append(f"{where}:{node.lineno}: operator.methodcaller")
        elif isinstance(node, ast.Global):
            found.append(f"{where}:{node.lineno}: global {', '.join(node.names)}")
    # State kept between calls: module-level names changed inside functions, caching decorators.
    for fn in functions:
        for d in fn.decorator_list:
            name = d.func if isinstance(d, ast.Call) else d
            last = name.attr if isinstance(name, ast.Attribute) else getattr(name, "id", "")
            if last in CACHES:
                found.append(f"{where}:{fn.lineno}: @{last} keeps state between runs")
        local = {a.arg for a in (*fn.args.args, *fn.args.kwonlyargs, *fn.args.posonlyargs)}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(t, ast.Name):
                        local.add(t.id)
        for node in ast.walk(fn):
            changed = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in MUTATORS:
                    changed = _root(node.func.value)
            elif isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
                targets = (
                    node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
                )
                for t in targets:
                    if isinstance(t, ast.Subscript | ast.Attribute):
                        changed = _root(t) or changed
            if changed and changed in module_level and changed not in local:
                found.append(f"{where}:{node.lineno}: changes module-level {changed}")
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
    # Relative imports resolve as Python does, a package's __init__ against the package itself.
    assert _relative_base("bridgehead.models", 1) == "bridgehead.models"
    assert _relative_base("bridgehead.billing", 1) == "bridgehead"
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


def test_twin_the_review_s_bypasses_are_caught():
    """Each way found around the first version of the check, planted in a workflow module."""
    planted = {
        "getattr": "import datetime\ndef f():\n    return getattr(datetime.datetime, 'now')()\n",
        "alias": "from datetime import datetime as workflow\ndef f():\n    return workflow.now()\n",
        "reference": "from datetime import datetime\nclock = datetime.now\n",
        "default": "from datetime import datetime\nimport dataclasses\n"
        "x = dataclasses.field(default_factory=datetime.now)\n",
        "methodcaller": "import operator\nf = operator.methodcaller('now')\n",
        "shared dict": "_SEEN = {}\ndef f(k):\n    _SEEN[k] = 1\n",
        "shared list": "_RUNS = []\ndef f(k):\n    _RUNS.append(k)\n",
        "cache": "import functools\n@functools.lru_cache\ndef f(k):\n    return k\n",
        "global": "N = 0\ndef f():\n    global N\n    N += 1\n",
    }
    missed = [
        name
        for name, text in planted.items()
        if not workflow_code_problems(extra={f"workflows._{name.replace(' ', '_')}": text})
    ]
    assert missed == []


def test_local_names_and_fields_named_like_module_state_are_not_reported():
    ok = (
        "from temporalio import workflow\n"
        "ITEMS = ()\n"
        "def f(input, ITEMS2):\n"
        "    seen = {}\n"
        "    seen['a'] = input.now\n"
        "    ITEMS2.append(1)\n"
        "    return workflow.now(), seen\n"
    )
    assert problems_in(ok, "ok", "workflows.ok")[0] == []
