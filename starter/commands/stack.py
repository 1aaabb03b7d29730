"""``up``: the embedded stack (moto server, Temporal dev server, worker) and the demo that drives
one organisation and one cluster through their lifecycle."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from bridgehead import models as m
from starter.args import leaf
from starter.client import client, start, wait_state
from starter.commands.dropbox import dropbox_setup
from starter.output import CliError, dumps, fmt_cluster, fmt_org
from starter.signals import cancel_on

BANNER = """
Bridgehead is up.
  Temporal Web UI : {ui}
  Temporal        : {temporal}   AWS emulator: {aws}
  state & logs    : {state}

Try (in another terminal, from this folder):
  export {env_line}
  .venv/bin/temporal workflow start --type OnboardOrganization --task-queue bridgehead --workflow-id org-acme \\
      --input '{{"org_id":"acme","display_name":"Acme","admin_email":"admin@acme.example","aws_account_id":"222222222222"}}'
  .venv/bin/python -m starter status org-acme
  .venv/bin/temporal workflow signal --workflow-id cluster-acme-c1 --name delete
Press Ctrl-C to stop everything.
"""
SHOWN_ENV = ("TEMPORAL_ADDRESS", "AWS_ENDPOINT", "BRIDGEHEAD_ENVIRONMENT")


async def cmd_up(args: argparse.Namespace) -> int:
    """In ``--json`` mode the progress lines go to stderr and stdout gets one document (the
    addresses) as soon as the stack is up: the command runs until Ctrl-C."""
    if not args.json:
        return await up(args, announce=lambda doc: None)
    stdout = sys.stdout

    def announce(doc: dict[str, str]) -> None:
        print(dumps(doc), file=stdout, flush=True)

    with contextlib.redirect_stdout(sys.stderr):
        return await up(args, announce)


async def up(args: argparse.Namespace, announce: Callable[[dict[str, str]], None]) -> int:
    from starter.local import LocalStack

    # Ctrl-C and SIGTERM stop everything, whenever they come: while the stack starts, during the
    # demo, or while it serves (starter/signals.py; the servers run in their own sessions).
    stopping = cancel_on(signal.SIGINT, signal.SIGTERM)
    serving = False
    stack = LocalStack(temporal_port=args.port, ui_port=args.ui_port, moto_port=args.aws_port)
    print("starting the embedded stack (moto server, Temporal dev server, worker)...", flush=True)
    try:
        stack.start()
    except RuntimeError as e:
        raise CliError(str(e), 1) from None
    try:
        os.environ.update(stack.env())
        from bridgehead.settings import get_settings

        get_settings.cache_clear()
        env_line = " ".join(f"{k}={v}" for k, v in stack.env().items() if k.startswith(SHOWN_ENV))
        banner = BANNER.format(
            ui=stack.ui_url,
            temporal=stack.temporal_address,
            aws=stack.aws_endpoint,
            state=stack.state_dir,
            env_line=env_line,
        )
        print(banner, flush=True)
        announce(
            {
                "temporal_address": stack.temporal_address,
                "ui_url": stack.ui_url,
                "aws_endpoint": stack.aws_endpoint,
                "state_dir": str(stack.state_dir),
            }
        )
        await dropbox_setup(await client())
        if args.demo:
            await demo(stack)
        if not args.exit_after_demo:
            serving = True
            await asyncio.Event().wait()  # until a signal cancels us
    except asyncio.CancelledError:
        if not stopping.cancelled_by_us():
            raise
        # Stopping a stack that serves is how it ends (0); a start or a demo cut short did not do
        # what was asked: the shell's code for the signal (130 for Ctrl-C, 143 for SIGTERM).
        return 0 if serving else stopping.exit_code
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


def said(what: str) -> Any:
    """A progress printer for the demo: ``[demo]   <what> <state>``."""
    return lambda s: print(f"[demo]   {what} {s.state.value}", flush=True)


async def demo(stack: Any) -> None:
    """One organisation and one cluster through the whole lifecycle."""
    from starter.local import DEMO_CUSTOMER_ACCOUNT, customer_admin

    org = f"demo{int(time.time()) % 100000}"
    account = DEMO_CUSTOMER_ACCOUNT
    print(f"[demo] onboarding organisation {org} (customer account {account})", flush=True)
    inp = m.OnboardOrganizationInput(
        org_id=org,
        display_name="Demo Org",
        admin_email="admin@demo.example",
        aws_account_id=account,
    )
    h = await start("OnboardOrganization", inp)
    s = await wait_state(h.id, "OnboardOrganization", {"AWAITING_ROLE"}, 60)
    print(
        f"[demo] External ID issued: {s.external_id}; the customer launches the role template",
        flush=True,
    )
    cfn = customer_admin(stack.aws_endpoint, account, "cloudformation")
    stack_name = f"bridgehead-access-{org}"
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=s.artifacts.cloudformation_template,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    role_arn = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Outputs"][0]["OutputValue"]
    c = await client()
    await c.get_workflow_handle(h.id).execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=role_arn), result_type=m.UpdateResult
    )
    s = await wait_state(
        h.id, "OnboardOrganization", {"READY", "ACTION_REQUIRED"}, 300, said("org")
    )
    if s.state != m.OrgState.READY:
        raise CliError(fmt_org(s))
    print(fmt_org(s), flush=True)
    cfg = m.ClusterConfig(
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_initial_nodes=2,
        compute_max_nodes=4,
    )
    cluster = m.ClusterLifecycleInput(
        org_id=org, name="c1", region="us-east-2", config=cfg, owner="alice"
    )
    ch = await start("ClusterLifecycle", cluster)
    s2 = await wait_state(ch.id, "ClusterLifecycle", {"RUNNING", "FAILED"}, 300, said("cluster"))
    print(fmt_cluster(s2), flush=True)
    await c.get_workflow_handle(ch.id).signal("delete")
    s2 = await wait_state(ch.id, "ClusterLifecycle", {"DELETED", "FAILED"}, 300, said("cluster"))
    print(
        f"[demo] done: cluster {s2.state.value}. Open {stack.ui_url} to see every workflow.",
        flush=True,
    )


def register(sub: Any) -> None:
    up = leaf(sub, "up", "run the embedded stack (Temporal dev server, moto, worker)", cmd_up)
    up.add_argument("--port", type=int, default=7233, help="Temporal frontend port (default 7233)")
    up.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port (default 8233)")
    up.add_argument("--aws-port", type=int, default=5000, help="moto server port (default 5000)")
    up.add_argument(
        "--demo",
        action="store_true",
        help="drive one organisation and one cluster through the lifecycle",
    )
    up.add_argument(
        "--exit-after-demo", action="store_true", help="stop the stack when the demo is done"
    )
