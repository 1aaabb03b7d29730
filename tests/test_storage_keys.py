"""Only the registry (the package ``activities/registry/``) and the ledger
(``activities/ledger.py``) know storage keys; every other module calls their typed methods.

The scan parses every Python module of the project outside those and ``tests/`` and reports,
as ``file:line``:

* a key spelled in a string: an upper-case word followed by ``#`` (``ORG#``, ``PERIOD#``, …,
  f-strings included) or a fixed sort key (``META``, ``TOTALS``, ``MARKETPLACE``, ``METER-LEASE``);
* a raw DynamoDB request: expression or transaction parameters (``TransactItems``,
  ``ConditionExpression``, …) or item-level client calls (``transact_write_items``, ``put_item``, …);
* the registry's private helpers (``_to_item``, ``_from_item``, …);
* the registry's generic primitives called on a registry (``registry.put(...)``,
  ``self.registry.update(...)``, ``registry.ddb``).

Docstrings and comments may describe the layout (they are not code). Twins: each planted defect in a
temporary module is reported at its line, and harmless look-alikes are not; a key planted in a
module next to the registry package (or in any other module) is reported, the same key inside the
package is not. A second check keeps the layout docstrings true: every key a registry module spells
is listed in the package's docstring (``activities/registry/__init__.py``), every key the ledger
spells in the ledger's.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_PACKAGE = Path("activities/registry")
LEDGER = Path("activities/ledger.py")


def owns_keys(rel: Path) -> bool:
    """The registry package's own modules (not a subpackage, not a sibling) and the ledger."""
    return rel == LEDGER or rel.parent == REGISTRY_PACKAGE


#: Emulators of the DynamoDB API (the benchmark's fake AWS) must read a request's parameters; they
#: are still checked for spelled keys, private helpers and registry primitives.
EMULATORS = {Path("bench/fakeworld.py")}
RAW_PARAMETER_FINDING = "raw DynamoDB request: '"


def layout_home(rel: Path) -> Path:
    """The module whose docstring documents the layout of the keys ``rel`` spells."""
    return LEDGER if rel == LEDGER else REGISTRY_PACKAGE / "__init__.py"


KEY_PREFIX = re.compile(r"(?<![A-Za-z0-9_])[A-Z][A-Z0-9_-]+#")
FIXED_KEYS = {"META", "TOTALS", "MARKETPLACE", "METER-LEASE"}
RAW_PARAMETERS = {
    "TransactItems",
    "ConditionCheck",
    "ConditionExpression",
    "UpdateExpression",
    "KeyConditionExpression",
    "ExpressionAttributeNames",
    "ExpressionAttributeValues",
}
RAW_CALLS = {
    "transact_write_items",
    "transact_get_items",
    "batch_write_item",
    "put_item",
    "update_item",
    "get_item",
    "delete_item",
}
PRIVATE_HELPERS = {"_to_item", "_from_item", "_dynamo_safe", "_conditional", "_transact"}
PRIMITIVES = {"get", "put", "update", "delete", "query", "put_new_and_add", "transition", "ddb"}
REGISTRY_NAME = re.compile(r"^(reg|registry|_registry)$")


def project_modules() -> list[Path]:
    """Every Python module of the project (relative paths): what git tracks or would add, so
    build output, virtual environments and mutation-testing copies are left out."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(Path(p) for p in listed if (ROOT / p).exists())


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string constants that are documentation (a bare string statement), not code."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Registry"
    ):
        return "registry"
    return None


def findings(source: str, name: str) -> list[str]:
    """``name:line: what`` for every place in ``source`` that knows storage keys."""
    tree = ast.parse(source, filename=name)
    docs = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if KEY_PREFIX.search(text):
                found.append((line, f"key spelled: {text!r}"))
            elif text in FIXED_KEYS:
                found.append((line, f"fixed sort key: {text!r}"))
            elif text in RAW_PARAMETERS or text in PRIVATE_HELPERS:
                found.append((line, f"raw DynamoDB request: {text!r}"))
        elif isinstance(node, ast.keyword) and node.arg in RAW_PARAMETERS:
            found.append((line, f"raw DynamoDB request: {node.arg}="))
        elif isinstance(node, ast.Name) and node.id in PRIVATE_HELPERS:
            found.append((line, f"registry private helper: {node.id}"))
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in PRIVATE_HELPERS:
                    found.append((line, f"registry private helper imported: {alias.name}"))
        elif isinstance(node, ast.Attribute):
            if node.attr in RAW_CALLS or node.attr in PRIVATE_HELPERS:
                found.append((line, f"raw DynamoDB request: .{node.attr}"))
            elif node.attr in PRIMITIVES and REGISTRY_NAME.match(_receiver_name(node.value) or ""):
                found.append(
                    (line, f"registry primitive called directly (use a typed method): .{node.attr}")
                )
    return [f"{name}:{line}: {what}" for line, what in sorted(set(found))]


def test_modules_are_found() -> None:
    """No silent pass: the scan covers the modules that used to spell keys."""
    modules = set(project_modules())
    expected = {
        "activities/billing.py",
        "activities/clusters.py",
        "activities/dropbox.py",
        "activities/images.py",
        "activities/onboarding.py",
        "activities/regions.py",
        "activities/marketplace.py",
        "worker.py",
        "workflows/billing.py",
        "bridgehead/billing.py",
    }
    assert {Path(p) for p in expected} <= modules
    assert any(p.parts[0] == "starter" for p in modules)
    assert any(p.parts[0] == "bench" for p in modules)
    owners = {p for p in modules if owns_keys(p)}
    assert owners == {
        LEDGER,
        *(
            REGISTRY_PACKAGE / f
            for f in ("__init__.py", "store.py", "orgs.py", "clusters.py", "links.py", "images.py")
        ),
    }


def violations(sources: dict[Path, str]) -> list[str]:
    """Findings in every module of ``sources`` (path -> text) that neither owns keys nor is a test."""
    problems = []
    for rel, text in sorted(sources.items()):
        if owns_keys(rel) or rel.parts[0] == "tests":
            continue
        found = findings(text, str(rel))
        if rel in EMULATORS:
            found = [f for f in found if RAW_PARAMETER_FINDING not in f]
        problems += found
    return problems


def test_only_the_registry_and_the_ledger_know_storage_keys() -> None:
    problems = violations({rel: (ROOT / rel).read_text() for rel in project_modules()})
    assert problems == [], "storage keys outside the registry and the ledger:\n" + "\n".join(
        problems
    )


def test_twin_a_key_outside_the_registry_package_is_reported() -> None:
    key = '"""A module."""\n\nx = f"ORG#{org_id}"\n'
    sources = {
        Path("activities/registry/orgs.py"): key,
        Path("activities/ledger.py"): key,
        Path("activities/registry_extra.py"): key,
        Path("activities/registry/more/deep.py"): key,
        Path("activities/regions.py"): key,
        Path("starter/commands/onboard.py"): key,
        Path("tests/test_x.py"): key,
    }
    assert violations(sources) == [
        "activities/regions.py:3: key spelled: 'ORG#'",
        "activities/registry/more/deep.py:3: key spelled: 'ORG#'",
        "activities/registry_extra.py:3: key spelled: 'ORG#'",
        "starter/commands/onboard.py:3: key spelled: 'ORG#'",
    ]


PLANTED = [
    ('x = f"ORG#{org_id}"', "key spelled: 'ORG#'"),
    ('item = {"pk": "DROPBOX#" + user}', "key spelled: 'DROPBOX#'"),
    ('sk = "META"', "fixed sort key: 'META'"),
    ('reg.get(pk, "TOTALS")', "fixed sort key: 'TOTALS'"),
    ("ddb.transact_write_items(TransactItems=[])", "raw DynamoDB request: .transact_write_items"),
    ("ddb.transact_write_items(TransactItems=[])", "raw DynamoDB request: TransactItems="),
    (
        'req = {"ConditionExpression": "attribute_not_exists(pk)"}',
        "raw DynamoDB request: 'ConditionExpression'",
    ),
    (
        "from activities.registry import Registry, _to_item",
        "registry private helper imported: _to_item",
    ),
    ("item = _to_item(d)", "registry private helper: _to_item"),
    (
        "self.registry.update(pk, sk, fields)",
        "registry primitive called directly (use a typed method): .update",
    ),
    ("Registry(aws).put(item)", "registry primitive called directly (use a typed method): .put"),
    ("client = self.registry.ddb", "registry primitive called directly (use a typed method): .ddb"),
]


@pytest.mark.parametrize(("code", "expected"), PLANTED)
def test_planted_defect_is_reported(tmp_path: Path, code: str, expected: str) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(f'"""A module."""\n\n{code}\n')
    assert f"planted.py:3: {expected}" in findings(planted.read_text(), planted.name)


def test_look_alikes_are_not_reported() -> None:
    source = '''"""Items live under ``ORG#<org>`` / ``META`` (documentation may name keys)."""

# a comment may too: ORG#<org> CLUSTER#<name>
def f(d, registry, settings):
    """The ``PERIOD#`` entries."""
    d.get("x")
    d.update({"a": 1})
    settings.registry_table
    registry.cluster("acme", "c1")
    registry.put_dropbox_user("alice", "acme", "alice")
    return "meta", "#s", "C# is a language", "issue #22"
'''
    assert findings(source, "ok.py") == []


def _spelled(rel: Path) -> set[str]:
    """Key prefixes and fixed sort keys the code (not the docstrings) of a module spells."""
    tree = ast.parse((ROOT / rel).read_text())
    docs = _docstrings(tree)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.update(m.group(0) for m in KEY_PREFIX.finditer(node.value))
            if node.value in FIXED_KEYS:
                out.add(node.value)
    return out


def _undocumented(spelled: set[str], layout: str) -> list[str]:
    return sorted(k for k in spelled if not re.search(rf"(?<![A-Za-z0-9_-]){re.escape(k)}", layout))


@pytest.mark.parametrize(
    "rel",
    [
        LEDGER,
        *(REGISTRY_PACKAGE / f for f in ("orgs.py", "clusters.py", "links.py")),
    ],
)
def test_layout_docstring_lists_every_key_the_module_spells(rel: Path) -> None:
    home = layout_home(rel)
    layout = ast.get_docstring(ast.parse((ROOT / home).read_text())) or ""
    spelled = _spelled(rel)
    assert spelled, f"{rel} spells no key: the scan is looking at the wrong module"
    missing = _undocumented(spelled, layout)
    assert missing == [], f"{rel}: keys missing from the layout in {home}: {missing}"


def test_twin_an_undocumented_key_is_caught() -> None:
    assert _undocumented({"ORG#", "RELEASE#", "META"}, "ORG#<org>  META  the organisation") == [
        "RELEASE#"
    ]


def test_emulator_exemption_is_narrow() -> None:
    """An emulator may read request parameters, but a key it spelled would still be reported."""
    source = '"""An emulator."""\n\nexpr = p["UpdateExpression"]\npk = "ORG#" + org\n'
    assert violations({Path("bench/fakeworld.py"): source}) == [
        "bench/fakeworld.py:4: key spelled: 'ORG#'"
    ]
