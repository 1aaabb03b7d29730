"""One patch marker per new run instead of one per patch: the patch baseline.

Every ``workflow.patched(id)`` a run takes costs it a marker event and an upsert of the
``TemporalChangeVersion`` search attribute (two history events, a visibility write, and a billed
action on Temporal Cloud), once per run and patch. A cluster's lifecycle took five of them on every
new run: ten of its 71 events and five of its upserts (issue 23).

The baseline is one patch, :data:`BASELINE`, that stands for every patch in :data:`IN_BASELINE`.
Every workflow type that can ask a patch (:data:`BASELINE_TYPES`) decides it once, with
:func:`start` as the first statement of its ``__init__``: the instance is made in the run's first
activation, before any signal or update handler runs (they run before ``@workflow.run`` starts).

* A new run takes the baseline (one marker, one upsert) and with it every patch it stands for,
  without a marker of its own;
* a run recorded before the baseline replays its first activation without the marker, so the
  baseline is not taken and every patch is asked as it always was (its own marker decides).

Deciding in the first activation is what makes this safe: a run that started on older code and
asks its first patch in a later, live task would otherwise take the baseline there, after having
answered one of its patches without it. :func:`patched` never takes the baseline lazily: a
workflow that never called :func:`start` asks every patch as before.

Cycle (docs/reliability.md): once no open run of :data:`BASELINE_TYPES` lacks the baseline, the
"not patched" branches of the patches it stands for can be deleted; the baseline stays for as long
as runs that took it are open (older code cannot replay them: no rolling back past it). New
patches are asked with :func:`patched` as usual and join the next baseline.
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

#: Patches added since the baseline: asked with their own marker (a run that took the baseline
#: decided it before they existed) until the next baseline takes them in.
AFTER_BASELINE = frozenset(
    {
        "images-beside-foundations",
        "offboard-every-recorded-foundation",
        "ready-at-once",
    }
)

#: The workflow types whose ``__init__`` opens with :func:`start` (every type that can ask a patch;
#: tests/workflows/test_patch_baseline.py checks both).
BASELINE_TYPES = frozenset(
    {
        "BillingMeter",
        "CleanupRegion",
        "ClusterLifecycle",
        "OnboardOrganization",
        "ProvisionRegion",
        "ShareImages",
    }
)

#: Where a run keeps its decision (an attribute of its workflow instance: one per run, in either
#: sandbox mode).
_DECIDED = "_bridgehead_patch_baseline"


def start(instance: object) -> None:
    """Decide the baseline for this run: the first statement of the workflow's ``__init__``
    (``instance`` is ``self``: ``workflow.instance()`` is not set yet there)."""
    setattr(instance, _DECIDED, workflow.patched(BASELINE))


def baseline() -> bool:
    """Whether this run took the baseline (False when its workflow never called :func:`start`)."""
    return bool(getattr(workflow.instance(), _DECIDED, False))


def patched(patch_id: str) -> bool:
    """``workflow.patched(patch_id)``, except that a run that took the baseline takes every patch
    in it without a marker of its own."""
    if patch_id in IN_BASELINE and baseline():
        return True
    return workflow.patched(patch_id)
