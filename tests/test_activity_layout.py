"""Every activity the worker registers is exercised under ``tests/activities/`` (issue #22).

Each module there declares ``ACTIVITIES``, the registered names it covers. Checked here, without
running them: (a) the declarations together name exactly the activities ``worker.build_activities``
registers, (b) each module refers to every name it declares (``acts.<name>`` handed to the runner,
or the name as a string) outside the declaration itself, and no name is declared that the worker
does not register. What the modules really run through ``ActivityEnvironment`` is checked by
``tests/activities/conftest.py`` after each module. Twins: an activity registered without a test,
a declaration nothing refers to, and the run-time check's own rule.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from bridgehead import models as m
from tests.test_activity_stubs import registered

LAYOUT = Path(__file__).resolve().parent / "activities"


def declared(tree: ast.Module) -> tuple[ast.Assign | None, tuple[str, ...]]:
    """The module's ``ACTIVITIES = (...)`` statement and the names it holds."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "ACTIVITIES" for t in node.targets
        ):
            return node, tuple(ast.literal_eval(node.value))
    return None, ()


def referred(tree: ast.Module, skip: ast.AST | None) -> set[str]:
    """Attribute names and string constants of the module, outside ``skip``."""
    hidden = {id(n) for n in ast.walk(skip)} if skip is not None else set()
    found = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


def layout_problems(folder: Path, names: set[str]) -> list[str]:
    """What keeps ``folder`` from exercising exactly the registered ``names``."""
    problems, covered = [], set()
    for path in sorted(folder.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        statement, these = declared(tree)
        if statement is None:
            problems.append(f"{path.name}: declares no ACTIVITIES")
            continue
        refs = referred(tree, statement)
        for name in these:
            if name not in names:
                problems.append(f"{path.name}: {name} is not an activity the worker registers")
            elif name not in refs:
                problems.append(f"{path.name}: declares {name} but never runs it")
        covered |= set(these)
    problems += [
        f"{name}: registered by the worker, exercised by no module under tests/activities"
        for name in sorted(names - covered)
    ]
    return problems


def test_every_registered_activity_is_exercised_under_tests_activities():
    names = set(registered())
    assert len(names) == 50
    assert layout_problems(LAYOUT, names) == []


def test_twin_a_newly_registered_activity_without_a_test_is_reported(monkeypatch):
    from temporalio import activity

    import tests.test_activity_stubs as stubs

    @activity.defn(name="archive_cluster")
    def archive_cluster(req: m.RegionClustersInput) -> None:  # annotations resolve in this module
        ...

    real = stubs.build_activities
    monkeypatch.setattr(
        stubs, "build_activities", lambda *a, **k: [*real(*a, **k), archive_cluster]
    )
    assert layout_problems(LAYOUT, set(registered())) == [
        "archive_cluster: registered by the worker, exercised by no module under tests/activities"
    ]


def test_twin_a_declaration_nothing_runs_and_a_stale_name_are_reported(tmp_path):
    for path in LAYOUT.glob("test_*.py"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "test_planted.py").write_text(
        'ACTIVITIES = ("notify", "send_fax")\n\n\ndef test_nothing():\n    assert True\n'
    )
    (tmp_path / "test_undeclared.py").write_text("def test_nothing():\n    assert True\n")
    assert layout_problems(tmp_path, set(registered())) == [
        "test_planted.py: declares notify but never runs it",
        "test_planted.py: send_fax is not an activity the worker registers",
        "test_undeclared.py: declares no ACTIVITIES",
    ]


def test_twin_the_run_time_check_reports_a_declared_activity_no_test_ran():
    from tests.activities.conftest import not_run

    assert not_run(("create_stack", "poll_stack"), {"create_stack", "poll_stack"}) == []
    assert not_run(("create_stack", "poll_stack"), {"create_stack", "notify"}) == ["poll_stack"]
