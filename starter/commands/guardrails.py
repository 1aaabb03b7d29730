"""Cost guard rails from the CLI: ``cluster keep|stop|start|protect`` (signals and the update
``set_deletion_protection`` of ``ClusterLifecycle``) and ``org set-budget`` (the update
``set_budget`` of ``OnboardOrganization``)."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import Any

from bridgehead import ids
from bridgehead import models as m
from starter.args import group, leaf
from starter.client import client
from starter.output import BAD_INPUT, CliError, emit

_SIGNALS = {
    "keep": "cancel a pending automatic stop or delete (the idle clock restarts)",
    "stop": "stop the cluster's instances, keeping its storage (billing pauses)",
    "start": "start a STOPPED cluster",
}


async def cmd_cluster_signal(args: argparse.Namespace) -> int:
    wf_id = ids.cluster_workflow_id(args.org, args.name)
    c = await client()
    await c.get_workflow_handle(wf_id).signal(args.signal)
    emit(args, {"signalled": args.signal, "workflow_id": wf_id}, f"{args.signal} sent to {wf_id}")
    return 0


async def cmd_cluster_protect(args: argparse.Namespace) -> int:
    wf_id = ids.cluster_workflow_id(args.org, args.name)
    c = await client()
    res = await c.get_workflow_handle(wf_id).execute_update(
        "set_deletion_protection",
        m.SetDeletionProtectionInput(enabled=not args.off),
        result_type=m.DeletionProtectionResult,
    )
    word = "on" if res.enabled else "off"
    emit(args, res, f"deletion protection of {wf_id} is {word}")
    return 0


async def cmd_org_set_budget(args: argparse.Namespace) -> int:
    amount = None
    if not args.remove:
        if args.usd is None:
            raise CliError("give --usd AMOUNT or --remove", BAD_INPUT)
        try:
            amount = Decimal(args.usd)
        except InvalidOperation:
            raise CliError(f"--usd: {args.usd!r} is not an amount", BAD_INPUT) from None
    c = await client()
    res = await c.get_workflow_handle(ids.org_workflow_id(args.org)).execute_update(
        "set_budget",
        m.SetBudgetInput(monthly_budget_usd=amount, budget_action=args.action),
        result_type=m.UpdateResult,
    )
    emit(args, res, res.message)
    return 0


def register_cluster(cls: Any) -> None:
    """Leaves of the ``cluster`` group."""
    for name, text in _SIGNALS.items():
        c = leaf(cls, name, text + f" (the {name} signal)", cmd_cluster_signal)
        c.add_argument("--org", required=True, help="organisation id")
        c.add_argument("--name", required=True, help="cluster name")
        c.set_defaults(signal=name)
    c = leaf(cls, "protect", "turn deletion protection on (or off with --off)", cmd_cluster_protect)
    c.add_argument("--org", required=True, help="organisation id")
    c.add_argument("--name", required=True, help="cluster name")
    c.add_argument("--off", action="store_true", help="turn protection off (delete is accepted)")


def register(sub: Any) -> None:
    org = group(sub, "org", "an organisation's settings")
    o = leaf(org, "set-budget", "set or remove the monthly budget (set_budget)", cmd_org_set_budget)
    o.add_argument("--org", required=True, help="organisation id")
    o.add_argument("--usd", help="monthly budget in USD, e.g. 500")
    o.add_argument(
        "--action",
        choices=("notify", "stop"),
        default="notify",
        help="at 100 %%: notify only, or also stop running clusters",
    )
    o.add_argument("--remove", action="store_true", help="remove the budget")
