"""What a workflow history costs: Temporal actions and events, measured from real histories.

Used by the billing tests and the benchmarks (``bench/``). An *action* is what Temporal Cloud bills
for: here, each scheduled activity, started timer, started child workflow, signal sent to another
workflow and search-attribute upsert (workflow starts and continue-as-new are counted per run).
"""

from __future__ import annotations

from collections.abc import Iterable
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


def count_actions(events: Iterable[Any]) -> int:
    """Actions in one run's history events (see module doc)."""
    return sum(1 for e in events if e.event_type in ACTION_EVENTS)


def count_events(events: Iterable[Any], *types: int) -> int:
    return sum(1 for e in events if e.event_type in types)
