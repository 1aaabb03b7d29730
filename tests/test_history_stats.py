"""Local activities are billed actions (bridgehead/history_stats.billable_actions): each
local-activity marker counts, patch markers do not. Twins: a history without the local activity's
marker, and one whose only marker is a patch's, count no local activity."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bridgehead.history_stats import LOCAL_ACTIVITY_MARKER, billable_actions


def marker(name: str) -> HistoryEvent:
    e = HistoryEvent(event_type=EventType.EVENT_TYPE_MARKER_RECORDED)
    e.marker_recorded_event_attributes.marker_name = name
    return e


STARTED = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)


def test_each_local_activity_marker_is_an_action():
    a = billable_actions([STARTED, marker(LOCAL_ACTIVITY_MARKER), marker(LOCAL_ACTIVITY_MARKER)])
    assert (a.local_activities, a.total) == (2, 3)


def test_twin_a_patch_marker_is_not_a_local_activity():
    a = billable_actions([STARTED, marker("core_patch")])
    assert (a.local_activities, a.total) == (0, 1)


def test_twin_without_the_marker_nothing_is_counted():
    assert billable_actions([STARTED]).local_activities == 0
