"""The organisation's bill, read from the ledger (no AWS call)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from activities.ledger import Ledger
from activities.registry import Registry
from bridgehead import billing, budget
from bridgehead.models import METERING_STATES, BillingReport, ReportLine, UsageSegment


def billing_report(
    registry: Registry, org_id: str, month: str | None, now: datetime
) -> BillingReport:
    """The organisation's bill from the ledger: per cluster and instance type the node-minutes
    and money first billed, the corrections and the net; the open hours so far; what Marketplace
    did not take and why; credits owed for corrected usage Marketplace had already accepted.

    Money comes from the ledger, never recomputed with another rounding: a line costs the sum of its
    entries' ``line_costs`` (:func:`bridgehead.billing.line_cost`), so the report's totals are the
    ledger's to the cent. Entries written before ``line_costs`` existed are split with the same
    function, and a cent of difference to their stored ``cost_usd`` goes to their largest line.
    """
    ledger = Ledger(registry)
    entries = ledger.entries(org_id, month)
    corrections = ledger.corrections(org_id, month)
    link = registry.marketplace(org_id)
    linked_hour = (
        billing.floor_hour(datetime.fromisoformat(link["linked_at"])).isoformat() if link else None
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(cluster: str, itype: str) -> dict[str, Any]:
        return rows.setdefault(
            (cluster, itype), {"min": 0, "usd": Decimal(0), "cmin": 0, "cusd": Decimal(0)}
        )

    report = BillingReport(org_id=org_id, month=month)
    unmetered: dict[str, list[int]] = {}
    for e in entries:
        costs = _entry_line_costs(e, registry.aws.settings.rates)
        for t, minutes in e["lines"].items():
            r = row(e["cluster"], t)
            r["min"] += int(minutes)
            r["usd"] += costs[t]
        where = f"{e['cluster']} {e.get('window_start') or e['period_start']}"
        if e.get("metering_defects"):
            report.defects.append(
                f"{where}: {', '.join(e['metering_defects'])} refused as DuplicateRecord (not metered; settle by hand)"
            )
        elif not e.get("metered"):
            if link is None:
                why = "no AWS Marketplace link"
            elif e["period_start"] < (linked_hour or ""):
                why = "before the AWS Marketplace link"
            elif link.get("state") not in METERING_STATES:
                why = f"AWS Marketplace subscription {link.get('state')}"
            else:
                why = "not yet accepted by AWS Marketplace"
            n = unmetered.setdefault(why, [0, 0])
            n[0] += 1
            n[1] += int(e["node_minutes"])
    report.not_metered = [
        f"{n} ledger entries ({minutes} node-minutes): {why}"
        for why, (n, minutes) in sorted(unmetered.items())
    ]
    for x in corrections:
        r = row(x["cluster"], x["instance_type"])
        r["cmin"] += int(x["node_minutes_delta"])
        r["cusd"] += Decimal(str(x["cost_usd_delta"]))
        if x.get("metered") and int(x["node_minutes_delta"]) < 0:
            report.credits.append(
                f"{x['cluster']} {x['period_start']} {x['instance_type']}: credit ${-Decimal(str(x['cost_usd_delta']))} "
                f"({-int(x['node_minutes_delta'])} node-minutes Marketplace already accepted): {x['reason']}"
            )
    for (cluster, itype), r in sorted(rows.items()):
        report.lines.append(
            ReportLine(
                cluster=cluster,
                instance_type=itype,
                node_minutes=r["min"],
                corrections_node_minutes=r["cmin"],
                net_node_minutes=r["min"] + r["cmin"],
                cost_usd=r["usd"],
                corrections_usd=r["cusd"],
                net_usd=r["usd"] + r["cusd"],
            )
        )
    report.node_minutes = sum(x.node_minutes for x in report.lines)
    report.corrections_node_minutes = sum(x.corrections_node_minutes for x in report.lines)
    report.net_node_minutes = report.node_minutes + report.corrections_node_minutes
    report.cost_usd = sum((x.cost_usd for x in report.lines), Decimal("0.00"))
    report.corrections_usd = sum((x.corrections_usd for x in report.lines), Decimal("0.00"))
    report.net_usd = report.cost_usd + report.corrections_usd
    # The open hours so far, within the month asked for: at 00:05 on the 1st the hour before
    # midnight is not closed yet, and it is the previous month's, not this one's.
    first = None if month is None else datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    if first is None or first <= now:
        for c in registry.clusters(org_id):
            segments = [UsageSegment.model_validate(x) for x in c.get("segments") or []]
            if not segments:
                continue
            since = (
                datetime.fromisoformat(c["billed_through"])
                if c.get("billed_through")
                else billing.floor_hour(segments[0].start)
            )
            if c.get(
                "observed_instances"
            ):  # what ran, as far as the last tick saw it (no AWS call here)
                seen = [
                    (
                        datetime.fromisoformat(r["launched"]),
                        datetime.fromisoformat(r["ended"]) if r.get("ended") else None,
                    )
                    for r in c["observed_instances"].values()
                ]
                segments = billing.reconcile(segments, seen)
            lo, hi = since, now
            if first is not None:
                lo, hi = max(lo, first), min(hi, budget.month_end(first))
            so_far = sum(billing.node_minutes(segments, lo, hi, now).values()) if hi > lo else 0
            if so_far:
                report.in_progress[c["name"]] = so_far
    return report


def _entry_line_costs(e: dict[str, Any], fallback: dict[str, Decimal]) -> dict[str, Decimal]:
    if e.get("line_costs"):
        return {t: Decimal(str(v)) for t, v in e["line_costs"].items()}
    known = {**fallback, **(e.get("rates") or {})}
    rates = {t: Decimal(str(known.get(t, 0))) for t in e["lines"]}
    costs = billing.line_costs({t: int(v) for t, v in e["lines"].items()}, rates)
    gap = Decimal(str(e["cost_usd"])) - sum(costs.values(), Decimal(0))
    if gap and costs:
        largest = max(costs, key=lambda t: costs[t])
        costs[largest] += gap
    return costs


def ledger_entries(
    registry: Registry, org_id: str, month: str | None = None
) -> list[dict[str, Any]]:
    """Ledger entries of an org, optionally for one ``YYYY-MM`` (for reports)."""
    return Ledger(registry).entries(org_id, month)
