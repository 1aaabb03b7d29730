"""``billing report``: the bill from the ledger (amounts as the worker's ``BillingReport`` computed
them: this module only lays them out, as a table, CSV or JSON)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from bridgehead import models as m
from starter.args import group, leaf
from starter.client import client
from starter.output import emit

#: The report's columns, in CSV order.
COLUMNS = [
    "cluster",
    "instance_type",
    "node_minutes",
    "cost_usd",
    "corrections_node_minutes",
    "corrections_usd",
    "net_node_minutes",
    "net_usd",
]


def month_arg(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"month must be YYYY-MM (e.g. 2026-11), not {value!r}")
    return value


def line_of(x: Any) -> dict[str, Any]:
    """One report line as the CLI shows it (amounts as decimal strings, never floats)."""
    return {
        "cluster": x.cluster,
        "instance_type": x.instance_type,
        "node_minutes": x.node_minutes,
        "cost_usd": str(x.cost_usd),
        "corrections_node_minutes": x.corrections_node_minutes,
        "corrections_usd": str(x.corrections_usd),
        "net_node_minutes": x.net_node_minutes,
        "net_usd": str(x.net_usd),
    }


def total_of(rep: m.BillingReport) -> dict[str, Any]:
    return {
        "node_minutes": rep.node_minutes,
        "cost_usd": str(rep.cost_usd),
        "corrections_node_minutes": rep.corrections_node_minutes,
        "corrections_usd": str(rep.corrections_usd),
        "net_node_minutes": rep.net_node_minutes,
        "net_usd": str(rep.net_usd),
    }


def as_csv(data: list[dict[str, Any]], total: dict[str, Any]) -> str:
    rows = [",".join(COLUMNS)]
    rows += [",".join(str(d[k]) for k in COLUMNS) for d in data]
    rows.append(",".join(["TOTAL", ""] + [str(total[k]) for k in COLUMNS[2:]]))
    return "\n".join(rows)


def as_text(rep: m.BillingReport, data: list[dict[str, Any]]) -> str:
    lines = []
    for d in data:
        line = f"{d['cluster']:20} {d['instance_type']:12} {d['node_minutes']:>8} min  ${d['cost_usd']}"
        if d["corrections_node_minutes"]:
            line += (
                f"  corrections {d['corrections_node_minutes']:+d} min ${d['corrections_usd']}"
                f"  net {d['net_node_minutes']} min ${d['net_usd']}"
            )
        lines.append(line)
    for cluster, minutes in sorted(rep.in_progress.items()):
        lines.append(
            f"{cluster:20} {'':12} in progress ({minutes} node-minutes so far, "
            "billed when the hour closes)"
        )
    if not lines:
        lines.append("(no usage)")
    human = "\n".join(lines) + f"\nTOTAL {rep.node_minutes} node-minutes, ${rep.cost_usd}"
    if rep.corrections_node_minutes or rep.corrections_usd:
        human += (
            f"; corrections {rep.corrections_node_minutes:+d} node-minutes, "
            f"${rep.corrections_usd}; net ${rep.net_usd}"
        )
    sections = (
        ("not metered through AWS Marketplace", rep.not_metered),
        ("metering defects", rep.defects),
        ("credits owed", rep.credits),
    )
    for title, items in sections:
        if items:
            human += f"\n{title}:\n" + "\n".join(f"  {x}" for x in items)
    return human


async def cmd_billing_report(args: argparse.Namespace) -> int:
    """The bill from the ledger, read by the worker (``BillingReport``): needs only Temporal."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from bridgehead import ids
    from bridgehead.settings import get_settings

    c = await client()
    inp = m.BillingReportInput(org_id=args.org, month=args.month)
    rep: m.BillingReport = await c.execute_workflow(
        "BillingReport",
        inp,
        id=ids.billing_report_workflow_id(args.org, args.month),
        task_queue=get_settings().task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        result_type=m.BillingReport,
    )
    data = [line_of(x) for x in rep.lines]
    total = total_of(rep)
    if args.csv and not args.json:  # --json wins: one JSON document
        print(as_csv(data, total))
        return 0
    document = {
        "org_id": args.org,
        "month": args.month,
        "lines": data,
        "total": total,
        "in_progress": rep.in_progress,
        "not_metered": rep.not_metered,
        "defects": rep.defects,
        "credits": rep.credits,
    }
    emit(args, document, as_text(rep, data))
    return 0


def register(sub: Any) -> None:
    bs = group(sub, "billing", "billing reports from the ledger")
    r = leaf(
        bs,
        "report",
        "an organisation's usage and cost, per cluster and instance type",
        cmd_billing_report,
    )
    r.add_argument("--org", required=True, help="organisation id")
    r.add_argument("--month", type=month_arg, help="YYYY-MM (default: every month)")
    r.add_argument("--csv", action="store_true", help="CSV, one line per cluster and a TOTAL line")
