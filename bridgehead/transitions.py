"""The registry as a state machine: which recorded state may follow which (pure, no I/O).

Every state write to the registry is conditional on the prior states listed here
(:meth:`activities.registry.Registry.transition`), so nothing can move a record backwards: an
OFFBOARDED organisation never becomes READY again, a DELETED cluster never RUNNING, whatever a
replayed, retried or crafted workflow asks. Writing the state a record already has is allowed
(an activity retried after a crash repeats its write). ``None`` stands for "no record yet".

An illegal transition is refused with :class:`IllegalTransition` (non-retryable, counted in the
metric ``bridgehead_illegal_transitions``).
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["org", "cluster", "foundation"]

_ORG_SETTLED = {"AWAITING_ROLE", "ACTION_REQUIRED", "READY"}

#: target state -> prior states from which it may be written.
ORG: dict[str, frozenset[str | None]] = {
    # Written by registration only (a new record).
    "AWAITING_ROLE": frozenset({None, "AWAITING_ROLE", "OFFBOARDING"}),
    "READY": frozenset({*_ORG_SETTLED, "OFFBOARDING"}),
    "ACTION_REQUIRED": frozenset({*_ORG_SETTLED, "OFFBOARDING"}),
    # OFFBOARDING -> a settled state: offboarding refused (clusters remain), state restored.
    "OFFBOARDING": frozenset({*_ORG_SETTLED, "OFFBOARDING"}),
    # Final: the record and ledger stay, nothing of Bridgehead's remains.
    "OFFBOARDED": frozenset({"OFFBOARDING", "OFFBOARDED"}),
}

CLUSTER: dict[str, frozenset[str | None]] = {
    # A name is reusable once its previous cluster is gone.
    "CREATING": frozenset({None, "CREATING", "DELETED", "CANCELLED"}),
    "RUNNING": frozenset({"CREATING", "RUNNING", "STOPPED"}),
    # Instances stopped, storage kept; started again (RUNNING) or deleted.
    "STOPPED": frozenset({"RUNNING", "STOPPED"}),
    "FAILED": frozenset({"CREATING", "DELETING", "FAILED"}),
    "DELETING": frozenset({"CREATING", "RUNNING", "STOPPED", "FAILED", "DELETING"}),
    "DELETED": frozenset({"DELETING", "DELETED"}),
    # Cancelled before or during creation (nothing registered yet, or CREATING).
    "CANCELLED": frozenset({None, "CREATING", "DELETING", "CANCELLED"}),
}

FOUNDATION: dict[str, frozenset[str | None]] = {
    "CREATING": frozenset({None, "CREATING", "FAILED", "DELETED"}),
    "READY": frozenset({"CREATING", "READY"}),
    "FAILED": frozenset({"CREATING", "FAILED"}),
    "DELETING": frozenset(
        {None, "CREATING", "READY", "FAILED", "DELETING", "DELETE_FAILED", "LEFTOVERS", "DELETED"}
    ),
    "DELETE_FAILED": frozenset({"DELETING", "DELETE_FAILED"}),
    "DELETED": frozenset({"DELETING", "DELETED", "LEFTOVERS"}),
    "LEFTOVERS": frozenset({"DELETING", "LEFTOVERS"}),
}

TABLES: dict[str, dict[str, frozenset[str | None]]] = {
    "org": ORG,
    "cluster": CLUSTER,
    "foundation": FOUNDATION,
}


class IllegalTransition(ValueError):
    """A state write the registry's state machine does not allow."""


def allowed_priors(kind: str, target: str) -> frozenset[str | None]:
    """The prior states from which ``target`` may be written (empty: never written)."""
    return TABLES[kind].get(target, frozenset())


def is_allowed(kind: str, prior: str | None, target: str) -> bool:
    return prior in allowed_priors(kind, target)


def refusal(kind: str, subject: str, prior: str | None, target: str) -> str:
    """The message of a refused transition, in words an operator can act on."""
    priors = sorted(p or "(new)" for p in allowed_priors(kind, target))
    now = prior or "not registered"
    if not priors:
        return f"{kind} {subject}: {target} is not a state Bridgehead records"
    return (
        f"{kind} {subject} is {now}; it cannot become {target} "
        f"(allowed only from {', '.join(priors)}). Nothing was changed."
    )
