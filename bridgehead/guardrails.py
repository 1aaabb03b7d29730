"""Pure rules of the cost guard rails (no I/O, no clock): when a cluster counts as idle, when to
read its CPU next, and which automatic action applies. The workflow (workflows/_guardrails.py)
calls them with ``workflow.now()`` and an activity's reading.

Cost of watching (the Temporal actions per cluster-hour of ``docs/benchmarks.md``): each reading is
one timer and one activity. After a reading that is not idle, the next one is due when the window
could first be idle: ``N`` minutes (``auto_stop_idle_minutes``) after the latest busy data point,
after the idle clock's start, or, with no data at all, after now; never sooner than
``idle_check_minutes``. A busy point seen at one reading is newer than the previous reading, so
two readings in a row are at least ``N`` minutes apart: at most two readings (four actions) per
``N`` minutes, i.e. at most ``240 / N`` actions per cluster-hour (4 at N = 60, 16 at the minimum
N = 15), whatever the interval setting.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bridgehead.models import AutoAction, ClusterConfig, CpuReading


def idle_window_start(now: datetime, idle_from: datetime, window: timedelta) -> datetime:
    """Start of the window to read: the last ``window``, not before the idle clock started."""
    return max(idle_from, now - window)


def is_idle(now: datetime, idle_from: datetime, window: timedelta, reading: CpuReading) -> bool:
    """Idle: the whole window lies after the idle clock's start, CloudWatch has data for it and no
    data point reached the threshold. No data is no evidence: not idle."""
    return now - idle_from >= window and reading.datapoints > 0 and reading.last_busy_at is None


def next_idle_check(
    now: datetime,
    idle_from: datetime,
    window: timedelta,
    floor: timedelta,
    reading: CpuReading | None,
) -> datetime:
    """When to read again after a reading that was not idle (or before the first one: ``None``)."""
    if reading is None or now - idle_from < window:
        earliest = idle_from + window
    elif reading.last_busy_at is not None:
        earliest = reading.last_busy_at + window
    else:  # no data points: look again once a whole new window could have data
        earliest = now + window
    return max(earliest, now + floor)


def auto_action(config: ClusterConfig, protected: bool) -> AutoAction:
    """What an automatic guard rail does: delete, or stop when the config keeps storage or the
    cluster is protected from deletion."""
    return "stop" if config.stop_keeps_storage or protected else "delete"
