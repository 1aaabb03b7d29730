"""The registry is a state machine (issue #17): every state write is conditional on the prior
states :mod:`bridgehead.transitions` allows, checked per transition against DynamoDB (moto)."""

from __future__ import annotations

import itertools

import pytest
from temporalio.exceptions import ApplicationError

from bridgehead import transitions

pytestmark = pytest.mark.integration

STATES = {
    "org": [None, "AWAITING_ROLE", "READY", "ACTION_REQUIRED", "OFFBOARDING", "OFFBOARDED"],
    "cluster": [None, "CREATING", "RUNNING", "DELETING", "DELETED", "FAILED", "CANCELLED"],
    "foundation": [
        None,
        "CREATING",
        "READY",
        "FAILED",
        "DELETING",
        "DELETE_FAILED",
        "DELETED",
        "LEFTOVERS",
    ],
}
#: Stories a reviewer checks first: (kind, prior, target) that must never be written.
NEVER = [
    ("org", "OFFBOARDED", "READY"),
    ("org", "OFFBOARDED", "AWAITING_ROLE"),
    ("org", "READY", "OFFBOARDED"),  # offboarding always passes through OFFBOARDING
    ("cluster", "DELETED", "RUNNING"),
    ("cluster", "FAILED", "RUNNING"),
    ("cluster", "RUNNING", "CREATING"),
    ("cluster", "DELETED", "DELETING"),
    ("foundation", "DELETED", "READY"),
    ("foundation", "DELETING", "READY"),
]


def violations() -> list[str]:
    return [f"{k}: {p} -> {t}" for k, p, t in NEVER if transitions.is_allowed(k, p, t)]


def test_backwards_transitions_are_never_allowed():
    assert violations() == []


def test_twin_a_table_that_lets_offboarded_become_ready_is_caught(monkeypatch):
    monkeypatch.setitem(transitions.ORG, "READY", transitions.ORG["READY"] | {"OFFBOARDED"})
    assert violations() == ["org: OFFBOARDED -> READY"]


@pytest.fixture(scope="module")
def registry(stack):  # type: ignore[no-untyped-def]
    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    reg = Registry(Aws(get_settings()))
    reg.ensure_tables()
    return reg


CASES = [
    (k, p, t) for k, states in STATES.items() for p, t in itertools.product(states, states[1:])
]


@pytest.mark.parametrize("kind,prior,target", CASES, ids=[f"{k}:{p}->{t}" for k, p, t in CASES])
def test_each_transition_is_written_only_if_allowed(registry, kind, prior, target):
    pk, sk = f"TRANSITION#{kind}#{prior}#{target}", "META"
    registry.delete(pk, sk)
    if prior is not None:
        registry.put({"pk": pk, "sk": sk, "state": prior, "marker": "before"})
    allowed = transitions.is_allowed(kind, prior, target)
    if allowed:
        registry.transition(kind, pk, sk, target, {"marker": "after"}, subject="t")
        assert registry.get(pk, sk) == {"pk": pk, "sk": sk, "state": target, "marker": "after"}
    else:
        with pytest.raises(ApplicationError) as e:
            registry.transition(kind, pk, sk, target, {"marker": "after"}, subject="t")
        assert e.value.type == "IllegalTransition" and e.value.non_retryable
        assert (
            f"cannot become {target}" in e.value.message
            and (prior or "not registered") in e.value.message
        )
        after = registry.get(pk, sk)
        assert after == (
            None if prior is None else {"pk": pk, "sk": sk, "state": prior, "marker": "before"}
        ), "nothing was changed"


def test_a_cluster_record_moves_only_for_its_own_workflow(registry):
    pk, sk = "TRANSITION#owner", "CLUSTER#c1"
    registry.put({"pk": pk, "sk": sk, "state": "RUNNING", "workflow_id": "cluster-acme-c1"})
    with pytest.raises(ApplicationError, match="belongs to another workflow_id"):
        registry.transition(
            "cluster",
            pk,
            sk,
            "DELETING",
            {"workflow_id": "cluster-acme-c1"},
            subject="acme/c1",
            require={"workflow_id": "cluster-other-c1"},
        )
    assert registry.get(pk, sk)["state"] == "RUNNING"
    registry.transition(
        "cluster",
        pk,
        sk,
        "DELETING",
        {},
        subject="acme/c1",
        require={"workflow_id": "cluster-acme-c1"},
    )
    assert registry.get(pk, sk)["state"] == "DELETING"
