"""Pure billing arithmetic (no I/O), shared by the ledger activity, the report CLI and tests.

The rule (README "Billing" says the same, in words):

* What: a cluster is charged per node (its head node plus its compute nodes) from the moment its
  stack reached CREATE_COMPLETE until the moment ``delete`` was received, at its instance types'
  hourly rates. Failed and cancelled creations cost nothing.
* What ran: compute nodes are billed as the fewer of those requested and those observed in service
  in the cluster's Auto Scaling group (:func:`reconcile`); a shortfall or an interruption is not
  billed, a replacement is from its launch. The head node is billed as requested.
* Rounding of time: each usage *segment* (a stretch at one node count; a resize starts a new one)
  is rounded to the nearest minute, half up: 59 min 29 s -> 59, 59 min 30 s -> 60, and so a
  segment shorter than 30 s bills 0 minutes. Hourly ledger periods get the difference of the
  rounded elapsed minutes at their two boundaries, so the periods of a segment always add up to
  exactly its rounded total.
* Money: :func:`line_cost` is the only rounding of money. Each ledger entry's line (one instance
  type in one hourly period of one cluster) costs ``rate * node_minutes / 60`` rounded to the cent,
  half up; an entry costs the sum of its lines, the ledger and the report add those cents, so their
  totals are equal to the cent. Corrections are priced with the same function, at the rates the
  corrected entry was priced with.
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


def node_minutes(
    segments: list[UsageSegment], start: datetime, end: datetime, now: datetime
) -> dict[str, int]:
    """Node-minutes per instance type in [start, end): one head node plus the compute nodes."""
    out: dict[str, int] = defaultdict(int)
    for seg in segments:
        m = segment_minutes(seg, start, end, now)
        if m:
            out[seg.head_instance_type] += m
            if seg.compute_nodes:
                out[seg.compute_instance_type] += m * seg.compute_nodes
    return {k: v for k, v in out.items() if v}


CENT = Decimal("0.01")


def line_cost(node_minutes: int, rate: Decimal) -> Decimal:
    """USD for ``node_minutes`` at ``rate`` per node-hour, to the cent, half up (away from zero,
    so a credit of a line costs exactly minus the line). The one rounding of money."""
    return (Decimal(str(rate)) * Decimal(int(node_minutes)) / 60).quantize(
        CENT, rounding=ROUND_HALF_UP
    )


def line_costs(minutes_by_type: dict[str, int], rates: dict[str, Decimal]) -> dict[str, Decimal]:
    """:func:`line_cost` of each instance type."""
    return {t: line_cost(m, rates[t]) for t, m in minutes_by_type.items()}


def cost(minutes_by_type: dict[str, int], rates: dict[str, Decimal]) -> Decimal:
    """USD of a ledger entry: the sum of its lines' :func:`line_cost`."""
    return sum(line_costs(minutes_by_type, rates).values(), Decimal("0.00"))


#: Hours in the average month, for "the month at this rate".
HOURS_PER_MONTH = Decimal(730)


def hourly_price(
    head_type: str, compute_type: str, compute_nodes: int, rates: dict[str, Decimal]
) -> Decimal:
    """What a cluster costs per hour at ``compute_nodes`` (its head node plus its compute nodes, at
    the rate table's prices), rounded to the cent like a ledger line of one hour."""
    minutes = defaultdict(int, {head_type: 60})
    minutes[compute_type] += 60 * compute_nodes
    return cost(dict(minutes), rates)


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


def windows(
    segments: list[UsageSegment], since: datetime, until: datetime, *, partial: bool = False
) -> list[tuple[datetime, datetime, datetime]]:
    """Ledger windows ``(period, start, end)`` to close from ``since`` (where the ledger of the
    cluster ends, usually on the hour) to ``until``: whole hours that any segment touches, the rest
    of an hour a final metering closed part of, and with ``partial`` the open hour up to ``until``
    (a final metering: unsubscribe-pending)."""
    out: list[tuple[datetime, datetime, datetime]] = []
    if not segments:
        return out
    start_full = since
    if since != floor_hour(since):  # the rest of an hour whose first part is closed
        p = floor_hour(since)
        end = min(p + PERIOD, until)
        if end > since and (end == p + PERIOD or partial):
            out.append((p, since, end))
        start_full = p + PERIOD
    out.extend((p, p, p + PERIOD) for p in periods(segments, start_full, until))
    if partial:
        p = floor_hour(until)
        start = max(p, since)
        if (
            until > start
            and not any(w[0] == p for w in out)
            and any(s.start < until and (s.end is None or s.end > start) for s in segments)
        ):
            out.append((p, start, until))
    return out


def reconcile(
    segments: list[UsageSegment], instances: list[tuple[datetime, datetime | None]]
) -> list[UsageSegment]:
    """Segments as billed: at every instant the compute nodes billed are the fewer of those
    requested and those observed in service (``instances``: launch and end of each compute
    instance, end None while it runs). A shortfall or an interruption is not billed; a
    replacement is, from its launch; the head node is billed as requested.

    Each requested segment is cut where the billed count changes, so every piece is a run at one
    node count (rounded on its own); where the observed capacity meets the request, the segment is
    returned unchanged, and so is its rounding."""
    points = sorted({t for start, end in instances for t in (start, end) if t is not None})
    out: list[UsageSegment] = []
    for seg in segments:
        cuts = [
            seg.start,
            *[p for p in points if p > seg.start and (seg.end is None or p < seg.end)],
        ]
        pieces: list[UsageSegment] = []
        for i, a in enumerate(cuts):
            b = cuts[i + 1] if i + 1 < len(cuts) else seg.end
            running = sum(1 for start, end in instances if start <= a and (end is None or end > a))
            nodes = min(seg.compute_nodes, running)
            if pieces and pieces[-1].compute_nodes == nodes:
                pieces[-1].end = b
            else:
                pieces.append(seg.model_copy(update={"start": a, "end": b, "compute_nodes": nodes}))
        out.extend(pieces)
    return out
