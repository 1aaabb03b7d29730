"""What a workflow history costs: Temporal actions and events, measured from real histories.

Used by the billing tests, the wait measurements and the benchmarks (``bench/``).

:func:`count_actions` is the older, coarse count (one per scheduled activity, whatever its attempts;
starts counted by the caller). :func:`billable_actions` is the count as Temporal Cloud bills it
(docs.temporal.io/cloud/actions), read from one run's history:

* **workflow started**: 1 per run (a client start, a child start or a continue-as-new each start
  one run; a child is counted in its own history, not in its parent's);
* **activity attempts**: every attempt, retries included. Retries are not written to history; the
  ``ActivityTaskStarted`` event of the attempt that ended carries its attempt number, so attempts
  = that number. Attempts of an activity still pending (or cancelled before it started) are not
  in history and not counted: measure after the activity ended;
* **timers started**, including the timers of ``wait_condition(..., timeout=...)``;
* **signals received** (one action per signal; a signal a workflow sends to another counts in the
  receiver's history, so summing histories counts it once);
* **search-attribute upserts** (one per command; the ``TemporalChangeVersion`` upserts that
  ``workflow.patched`` makes are exempt);
* **updates accepted** (rejected updates are billed too but leave no history: not counted);
* **local activities**: one per local-activity marker, an upper bound (Cloud bills all the local
  activities of one workflow task as one action; their retries inside it leave no marker).

Not actions: workflow tasks (reported beside, as ``workflow_tasks``), other markers (patches),
queries by callers (billed, but made by people and tools, not by the workflow), Schedule actions
(1 per scheduled start, counted by the caller who knows the Schedule), heartbeats (none in our
waits).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType

ACTION_EVENTS = frozenset(
    {
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_TIMER_STARTED,
        EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    }
)
_CHANGE_VERSION = "TemporalChangeVersion"
#: The marker the SDK core records for each local activity's result.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def is_local_activity(e: Any) -> bool:
    """Whether history event ``e`` is a local activity's marker."""
    return bool(
        e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
    )


def count_actions(events: Iterable[Any]) -> int:
    """Actions in one run's history events (coarse: see module doc)."""
    return sum(1 for e in events if e.event_type in ACTION_EVENTS)


def count_events(events: Iterable[Any], *types: int) -> int:
    return sum(1 for e in events if e.event_type in types)


@dataclass
class Actions:
    """Billable actions of one or more runs, by kind (see module doc)."""

    starts: int = 0
    #: Attempts per activity type.
    activities: Counter[str] = field(default_factory=Counter)
    timers: int = 0
    #: Signals received, per signal name.
    signals: Counter[str] = field(default_factory=Counter)
    upserts: int = 0
    updates: int = 0
    #: Local activities (markers), an upper bound of what Cloud bills for them.
    local_activities: int = 0
    #: Not billed; reported beside the actions.
    workflow_tasks: int = 0
    events: int = 0

    @property
    def total(self) -> int:
        return (
            self.starts
            + sum(self.activities.values())
            + self.timers
            + sum(self.signals.values())
            + self.upserts
            + self.updates
            + self.local_activities
        )

    def __add__(self, other: Actions) -> Actions:
        return Actions(
            starts=self.starts + other.starts,
            activities=self.activities + other.activities,
            timers=self.timers + other.timers,
            signals=self.signals + other.signals,
            upserts=self.upserts + other.upserts,
            updates=self.updates + other.updates,
            local_activities=self.local_activities + other.local_activities,
            workflow_tasks=self.workflow_tasks + other.workflow_tasks,
            events=self.events + other.events,
        )


def billable_actions(events: Iterable[Any]) -> Actions:
    """Actions of one run's history as Temporal Cloud bills them (module doc)."""
    out = Actions()
    activity_type: dict[int, str] = {}
    for e in events:
        out.events += 1
        t = e.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            out.starts += 1
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activity_type[e.event_id] = (
                e.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            a = e.activity_task_started_event_attributes
            out.activities[activity_type.get(a.scheduled_event_id, "?")] += max(1, a.attempt)
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            out.timers += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            out.signals[e.workflow_execution_signaled_event_attributes.signal_name] += 1
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {_CHANGE_VERSION}:
                out.upserts += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            out.updates += 1
        elif is_local_activity(e):
            out.local_activities += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            out.workflow_tasks += 1
    return out
