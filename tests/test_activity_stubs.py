"""Workflows call activities through typed stubs (``workflows/_activities.py``): every stub must
name an activity the worker registers, with the same argument and result types, so a typo or a
type mismatch fails here instead of at run time in a customer's account."""

from __future__ import annotations

import inspect
import typing

import temporalio.activity

from bridgehead.settings import Settings
from worker import build_activities
from workflows import _activities as acts


def registered() -> dict[str, tuple[object, object]]:
    """Activity name -> (argument type, result type), from the worker's own registration."""
    out = {}
    for fn in build_activities(Settings(environment="local"), client=object()):  # type: ignore[arg-type]
        name = temporalio.activity._Definition.from_callable(fn).name  # type: ignore[union-attr]
        func = getattr(fn, "__func__", fn)
        hints = typing.get_type_hints(func)
        params = [p for p in inspect.signature(func).parameters if p != "self"]
        out[name] = (hints.get(params[0]), hints.get("return", type(None)))
    return out


def mismatches(stubs: list, known: dict[str, tuple[object, object]]) -> list[str]:  # type: ignore[type-arg]
    found = []
    for stub in stubs:
        if stub.name not in known:
            found.append(f"{stub.name}: not registered by the worker")
            continue
        arg, result = known[stub.name]
        if stub.arg != arg:
            found.append(f"{stub.name}: argument {stub.arg} != {arg}")
        if (stub.result or type(None)) != result:
            found.append(f"{stub.name}: result {stub.result} != {result}")
    return found


def test_every_stub_is_a_registered_activity_with_the_same_types():
    assert mismatches(acts.ALL, registered()) == []


def test_every_registered_activity_has_a_stub():
    assert sorted(set(registered()) - {s.name for s in acts.ALL}) == []


def test_every_stub_is_listed():
    stubs = [v for v in vars(acts).values() if isinstance(v, acts.ActivityStub)]
    assert sorted(s.name for s in stubs) == sorted(s.name for s in acts.ALL)


def test_twin_a_misspelled_or_mistyped_stub_is_caught():
    from bridgehead import models as m

    typo = acts.ActivityStub(
        "validate_clusters", m.ValidateClusterInput, m.ClusterPlan, "ClusterActivities"
    )
    wrong = acts.ActivityStub(
        "validate_cluster", m.ValidateClusterInput, m.StackPoll, "ClusterActivities"
    )
    found = mismatches([typo, wrong], registered())
    assert found == [
        "validate_clusters: not registered by the worker",
        f"validate_cluster: result {m.StackPoll} != {m.ClusterPlan}",
    ], found
