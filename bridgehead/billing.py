"""Pure billing arithmetic (no I/O), shared by the ledger activity, the report CLI and tests.

Rule: a cluster is charged per node from the moment its stack reached CREATE_COMPLETE until the
moment ``delete`` was received, at its instance types' hourly rates. Each usage segment (a stretch
at one node count) is rounded to the nearest minute, half up: 59 min 29 s -> 59, 59 min 30 s -> 60.
Hourly ledger periods get the difference of the rounded elapsed minutes at their two boundaries,
so the periods of a segment always add up to exactly its rounded total.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from bridgehead.models import UsageSegment

PERIOD = timedelta(hours=1)


def floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def rounded_minutes(seconds: float) -> int:
    """Nearest minute, half up."""
    return int((Decimal(str(seconds)) / 60).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _elapsed(seg: UsageSegment, t: datetime, now: datetime) -> float:
    end = seg.end or now
    t = min(max(t, seg.start), end)
    return (t - seg.start).total_seconds()


def segment_minutes(seg: UsageSegment, start: datetime, end: datetime, now: datetime) -> int:
    """Minutes of ``seg`` charged to the window [start, end)."""
    return rounded_minutes(_elapsed(seg, end, now)) - rounded_minutes(_elapsed(seg, start, now))


def node_minutes(segments: list[UsageSegment], start: datetime, end: datetime, now: datetime) -> dict[str, int]:
    """Node-minutes per instance type in [start, end): one head node plus the compute nodes."""
    out: dict[str, int] = defaultdict(int)
    for seg in segments:
        m = segment_minutes(seg, start, end, now)
        if m:
            out[seg.head_instance_type] += m
            if seg.compute_nodes:
                out[seg.compute_instance_type] += m * seg.compute_nodes
    return {k: v for k, v in out.items() if v}


def cost(minutes_by_type: dict[str, int], rates: dict[str, Decimal]) -> Decimal:
    """USD, to the cent, half up (rates are per node-hour)."""
    total = sum((rates[t] * m / 60 for t, m in minutes_by_type.items()), Decimal(0))
    return Decimal(total).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def periods(segments: list[UsageSegment], from_: datetime, until: datetime) -> list[datetime]:
    """Starts of the hourly periods in [from_, until) that any segment touches (closed periods only)."""
    if not segments:
        return []
    first = max(floor_hour(min(s.start for s in segments)), floor_hour(from_))
    out = []
    p = first
    while p + PERIOD <= until:
        if any(s.start < p + PERIOD and (s.end is None or s.end > p) for s in segments):
            out.append(p)
        p += PERIOD
    return out
