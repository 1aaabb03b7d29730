"""One patch marker per new run instead of one per patch: the patch baseline.

Every ``workflow.patched(id)`` a run takes costs it a marker event and an upsert of the
``TemporalChangeVersion`` search attribute (two history events, a visibility write, and a billed
action on Temporal Cloud), once per run and patch. A cluster's lifecycle took five of them on every
new run: ten of its 71 events and five of its upserts (issue 23).

The baseline is one patch, :data:`BASELINE`, that stands for every patch in :data:`IN_BASELINE`.
A workflow whose run opens with :func:`start` decides it once, in its first workflow task:

* a new run takes the baseline (one marker, one upsert) and with it every patch it stands for,
  without a marker of its own;
* a run recorded before the baseline replays its first task without the marker, so the baseline
  is not taken and every patch is asked as it always was (its own marker decides).

Deciding in the first task is what makes this safe: a run that started on older code and asks its
first patch in a later, live task would otherwise take the baseline there, after already having
answered one of its patches without it. A workflow that never calls :func:`start` asks every patch
as before (:func:`patched` never takes the baseline lazily).

Cycle (docs/reliability.md): once no run without the baseline is open
(``TemporalChangeVersion`` of the open runs all hold :data:`BASELINE`), the branches for "not
patched" of the patches it stands for can be deleted, and their ids with them; the baseline stays
for as long as runs that took it are open. New patches are asked with :func:`patched` as usual and
join the next baseline.
"""

from __future__ import annotations

from temporalio import workflow

#: The patch that stands for every patch in :data:`IN_BASELINE` on runs that open with it.
BASELINE = "baseline-2026-11"

#: The patches the baseline stands for: every patch of the code of 2026-11-26 (``workflows/``).
IN_BASELINE = frozenset(
    {
        "billing-final-meter",
        "billing-input-checks",
        "billing-stop",
        "budget-thresholds",
        "capacity-failover",
        "cleanup-sweep",
        "event-waits",
        "final-state-after-registry",
        "guardrails",
        "head-console-on-failure",
        "hourly-batches",
        "local-registry-calls",
        "org-follows-foundations",
        "org-notifications",
        "org-state-after-registry",
        "rejected-shows-failed",
        "reverify-schedule",
        "offboard-revoke-recorded-images",
        "role-propagation-in-verify",
        "template-by-reference",
        "tell-org-foundation",
        "temporary-keys-only",
    }
)

#: Where a run keeps its decision (an attribute of its workflow instance: one per run, in either
#: sandbox mode).
_DECIDED = "_bridgehead_patch_baseline"


def start() -> None:
    """Decide the baseline for this run: call it first thing in ``@workflow.run``."""
    setattr(workflow.instance(), _DECIDED, workflow.patched(BASELINE))


def baseline() -> bool:
    """Whether this run took the baseline (False when its workflow never called :func:`start`)."""
    return bool(getattr(workflow.instance(), _DECIDED, False))


def patched(patch_id: str) -> bool:
    """``workflow.patched(patch_id)``, except that a run that took the baseline takes every patch
    in it without a marker of its own."""
    if patch_id in IN_BASELINE and baseline():
        return True
    return workflow.patched(patch_id)
