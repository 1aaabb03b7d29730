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
    "cluster": [
        None,
        "CREATING",
        "RUNNING",
        "STOPPED",
        "DELETING",
        "DELETED",
        "FAILED",
        "CANCELLED",
    ],
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


#: The state machine as the product means it, written out here by hand and forwards (from each
#: state, the states it may become), independently of :mod:`bridgehead.transitions`, which lists
#: them backwards (each target's priors). Any difference is a change of meaning that must be made
#: in both places on purpose. Writing the state a record already has is always allowed (retries).
SPEC: dict[str, dict[str | None, set[str]]] = {
    "org": {
        None: {"AWAITING_ROLE"},
        "AWAITING_ROLE": {"AWAITING_ROLE", "READY", "ACTION_REQUIRED", "OFFBOARDING"},
        "READY": {"READY", "ACTION_REQUIRED", "OFFBOARDING"},
        "ACTION_REQUIRED": {"READY", "ACTION_REQUIRED", "OFFBOARDING"},
        # offboarding refused (clusters remain): the settled state is restored
        "OFFBOARDING": {"AWAITING_ROLE", "READY", "ACTION_REQUIRED", "OFFBOARDING", "OFFBOARDED"},
        "OFFBOARDED": {"OFFBOARDED"},
    },
    "cluster": {
        None: {"CREATING", "CANCELLED"},
        "CREATING": {"CREATING", "RUNNING", "FAILED", "DELETING", "CANCELLED"},
        "RUNNING": {"RUNNING", "STOPPED", "DELETING"},
        "STOPPED": {"RUNNING", "STOPPED", "DELETING"},
        "DELETING": {"DELETING", "DELETED", "FAILED", "CANCELLED"},
        "DELETED": {"DELETED", "CREATING"},  # the name is free again
        "FAILED": {"FAILED", "DELETING"},
        "CANCELLED": {"CANCELLED", "CREATING"},
    },
    "foundation": {
        None: {"CREATING", "DELETING"},
        "CREATING": {"CREATING", "READY", "FAILED", "DELETING"},
        "READY": {"READY", "DELETING"},
        "FAILED": {"FAILED", "CREATING", "DELETING"},
        "DELETING": {"DELETING", "DELETE_FAILED", "DELETED", "LEFTOVERS"},
        "DELETE_FAILED": {"DELETE_FAILED", "DELETING"},
        "DELETED": {"DELETED", "CREATING", "DELETING"},
        "LEFTOVERS": {"LEFTOVERS", "DELETED", "DELETING"},
    },
}


def table_differences() -> list[str]:
    """Each (kind, prior, target) on which the shipped table and :data:`SPEC` disagree."""
    out = []
    for kind, states in STATES.items():
        assert set(SPEC[kind]) == set(states), kind
        shipped_targets = set(transitions.TABLES[kind])
        assert shipped_targets <= set(states) - {None}, (kind, shipped_targets)
        for prior, target in itertools.product(states, states[1:]):
            want = target in SPEC[kind][prior]
            if transitions.is_allowed(kind, prior, target) != want:
                out.append(f"{kind}: {prior} -> {target} {'refused' if want else 'allowed'}")
    return out


def test_the_shipped_table_is_the_specified_state_machine():
    assert table_differences() == []


def test_twin_a_stopped_cluster_revived_from_deleted_is_caught(monkeypatch):
    """The review's plant: STOPPED written over DELETED or FAILED, RUNNING over CANCELLED."""
    c = transitions.CLUSTER
    monkeypatch.setitem(c, "STOPPED", c["STOPPED"] | {"DELETED", "FAILED"})
    monkeypatch.setitem(c, "RUNNING", c["RUNNING"] | {"CANCELLED"})
    assert sorted(table_differences()) == [
        "cluster: CANCELLED -> RUNNING allowed",
        "cluster: DELETED -> STOPPED allowed",
        "cluster: FAILED -> STOPPED allowed",
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
