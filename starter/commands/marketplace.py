"""``marketplace register``: link an AWS Marketplace buyer to an organisation."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bridgehead import models as m
from starter.args import group, leaf
from starter.client import client, search_attrs_for
from starter.output import CliError, emit


async def cmd_marketplace_register(args: argparse.Namespace) -> int:
    """Start ``MarketplaceSubscription`` for a buyer's registration token (encrypted in transit
    and history)."""
    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from bridgehead import ids
    from bridgehead.settings import get_settings

    inp = m.MarketplaceSubscriptionInput(
        org_id=args.org,
        registration_token=token,
        allow_different_account=args.allow_different_account,
    )
    wf_id = ids.marketplace_workflow_id(args.org)
    try:
        # A buyer may come back after a subscription ended: an ended run's id is reused.
        h = await (await client()).start_workflow(
            "MarketplaceSubscription",
            inp,
            id=wf_id,
            task_queue=get_settings().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=search_attrs_for(inp),
            static_summary=f"AWS Marketplace subscription of {args.org}",
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"{wf_id} is running: the organisation already has a Marketplace buyer "
            f"(`starter status {wf_id}`)"
        ) from None
    if not args.wait:
        emit(args, {"started": h.id}, f"started {h.id}; follow it with `starter status {h.id}`")
        return 0
    deadline = time.monotonic() + args.timeout
    while True:
        desc = await h.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            try:
                await h.result()
            except Exception as e:  # noqa: BLE001 - shown as the CLI's error
                cause = getattr(e, "cause", None)
                raise CliError(getattr(cause, "message", None) or str(e)) from None
        s = await h.query("status", result_type=m.MarketplaceStatus)
        if s.state is not None:
            linked = (
                f"{h.id}: {s.state.value} (AWS account {s.customer_aws_account_id}, "
                f"customer {s.customer_identifier})"
            )
            emit(args, s, linked)
            return 0
        if time.monotonic() > deadline:
            raise CliError(f"{h.id} did not link the buyer within {args.timeout:.0f} s")
        await asyncio.sleep(0.5)


def register(sub: Any) -> None:
    mps = group(sub, "marketplace", "AWS Marketplace buyers")
    x = leaf(
        mps,
        "register",
        "link the buyer of a registration token to an organisation (MarketplaceSubscription)",
        cmd_marketplace_register,
    )
    x.add_argument("--org", required=True, help="organisation id")
    x.add_argument(
        "--token",
        required=True,
        help="the x-amzn-marketplace-token AWS Marketplace posted ('-': read it from stdin)",
    )
    x.add_argument(
        "--allow-different-account",
        action="store_true",
        help="link even if the buyer's AWS account is not the org's",
    )
    x.add_argument("--wait", action="store_true", help="wait until the buyer is linked")
    x.add_argument("--timeout", type=float, default=120, help="seconds to wait (default 120)")
