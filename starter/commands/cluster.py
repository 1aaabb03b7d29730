"""``cluster``: create (with live progress, or a dry run) and delete clusters."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from bridgehead import ids
from bridgehead import models as m
from starter.args import group, leaf
from starter.client import client, start, wait_state
from starter.inputs import parse_input
from starter.output import BAD_INPUT, CliError, emit, fmt_cluster, show_cluster_progress

THREE_HOURS = 3 * 3600


def field_errors(e: ValidationError) -> str:
    from bridgehead.messages import describe

    return describe(e)


async def cmd_cluster_create(args: argparse.Namespace) -> int:
    config = m.ClusterConfig.model_validate(parse_input(m.ClusterConfig, args.config))
    try:
        inp = m.ClusterLifecycleInput(
            org_id=args.org,
            name=args.name,
            region=args.region,
            config=config,
            owner=args.owner,
            dry_run=args.dry_run,
        )
    except ValidationError as e:
        raise CliError("invalid cluster request: " + field_errors(e), BAD_INPUT) from None
    h = await start("ClusterLifecycle", inp)
    if args.dry_run:
        res = m.ClusterResult.model_validate(await h.result())
        if res.price is not None and not args.json:
            p = res.price
            print(
                f"# price (rates {p.rate_version}): ${p.hourly_usd}/hour, ${p.monthly_usd}/month at "
                f"{inp.config.compute_initial_nodes} compute nodes; up to ${p.hourly_usd_at_max}/hour "
                f"(${p.monthly_usd_at_max}/month) at {inp.config.compute_max_nodes}"
                + (
                    f"; ${p.rest_of_month_usd} for the rest of the month, ${p.budget_left_usd} of the budget left"
                    if p.rest_of_month_usd is not None
                    else ""
                ),
                file=sys.stderr,
            )
        if args.json:
            emit(args, res)
        else:
            args.output.document(res.rendered_template or "")
        return 0
    emit(args, {"workflow_id": h.id}, f"creating {h.id}")
    if not args.wait:
        return 0
    done = {"RUNNING", "FAILED", "CANCELLED", "DELETED"}
    show = None if args.json else show_cluster_progress
    s = await wait_state(h.id, "ClusterLifecycle", done, args.timeout, show)
    emit(args, s, fmt_cluster(s))
    return 0 if s.state == m.ClusterState.RUNNING else 1


async def cmd_cluster_delete(args: argparse.Namespace) -> int:
    wf_id = ids.cluster_workflow_id(args.org, args.name)
    c = await client()
    await c.get_workflow_handle(wf_id).signal("delete")
    if args.wait:
        show = None if args.json else show_cluster_progress
        s = await wait_state(wf_id, "ClusterLifecycle", {"DELETED", "FAILED"}, args.timeout, show)
        emit(args, s, fmt_cluster(s))
        return 0 if s.state == m.ClusterState.DELETED else 1
    emit(args, {"signalled": "delete", "workflow_id": wf_id}, f"delete requested for {wf_id}")
    return 0


def register(sub: Any) -> None:
    from starter.commands.guardrails import register_cluster

    cls = group(sub, "cluster", "create, delete, stop and start clusters")
    c = leaf(cls, "create", "create a cluster (ClusterLifecycle)", cmd_cluster_create)
    c.add_argument("--org", required=True, help="organisation id")
    c.add_argument("--name", required=True, help="cluster name ([A-Za-z][-A-Za-z0-9]{0,59})")
    c.add_argument("--region", required=True, help="one of the organisation's regions")
    c.add_argument("--config", required=True, help="short config JSON or @file.json")
    c.add_argument("--owner", help="owner tag (a user name)")
    c.add_argument(
        "--dry-run",
        action="store_true",
        help="validate against the live organisation and print the template; create nothing",
    )
    c.add_argument("--wait", action="store_true", help="wait, with live progress, until RUNNING")
    c.add_argument(
        "--timeout", type=float, default=THREE_HOURS, help="seconds to wait (default 3 h)"
    )

    c = leaf(cls, "delete", "delete a cluster (the delete signal)", cmd_cluster_delete)
    c.add_argument("--org", required=True, help="organisation id")
    c.add_argument("--name", required=True, help="cluster name")
    c.add_argument("--wait", action="store_true", help="wait, with live progress, until DELETED")
    c.add_argument(
        "--timeout", type=float, default=THREE_HOURS, help="seconds to wait (default 3 h)"
    )
    register_cluster(cls)
