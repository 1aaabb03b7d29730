"""``onboard``: register an organisation, hand over (or have us create) its role, print the role
template, offboard."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pydantic import SecretStr

from bridgehead import ids
from bridgehead import models as m
from starter.args import group, leaf
from starter.client import client, query, start, wait_state
from starter.output import CliError, emit, fmt_org, show_state

NEXT_STEP = (
    "\n\nnext: launch the role template (starter onboard template --org ...) "
    "and submit the role ARN"
)


async def cmd_onboard(args: argparse.Namespace) -> int:
    regions = {"regions": args.regions.split(",")} if args.regions else {}
    inp = m.OnboardOrganizationInput(
        org_id=args.org,
        display_name=args.name or args.org,
        admin_email=args.email,
        aws_account_id=args.account,
        **regions,
    )
    h = await start("OnboardOrganization", inp)
    waiting = {"AWAITING_ROLE", "ACTION_REQUIRED", "READY"}
    s = await wait_state(h.id, "OnboardOrganization", waiting, 60)
    emit(args, s, fmt_org(s) + NEXT_STEP)
    return 0


async def update_org(org_id: str, update: str, arg: Any) -> m.UpdateResult:
    c = await client()
    handle = c.get_workflow_handle(ids.org_workflow_id(org_id))
    return await handle.execute_update(update, arg, result_type=m.UpdateResult)


async def cmd_submit_role(args: argparse.Namespace) -> int:
    res = await update_org(args.org, "submit_role", m.SubmitRoleInput(role_arn=args.role_arn))
    emit(args, res, res.message)
    if args.wait:
        done = {"READY", "ACTION_REQUIRED"}
        wf_id = ids.org_workflow_id(args.org)
        s = await wait_state(wf_id, "OnboardOrganization", done, args.timeout, None)
        emit(args, s, fmt_org(s))
        return 0 if s.state == m.OrgState.READY else 1
    return 0


async def cmd_create_role(args: argparse.Namespace) -> int:
    import getpass

    secret = os.environ.get("CUSTOMER_AWS_SECRET_ACCESS_KEY") or getpass.getpass(
        "secret access key: "
    )
    token = os.environ.get("CUSTOMER_AWS_SESSION_TOKEN") or getpass.getpass("session token: ")
    keys = m.CreateRoleForMeInput(
        access_key_id=args.access_key_id,
        secret_access_key=SecretStr(secret),
        session_token=SecretStr(token),
    )
    res = await update_org(args.org, "create_role_for_me", keys)
    emit(args, res, res.message)
    return 0


async def cmd_offboard(args: argparse.Namespace) -> int:
    req = m.OffboardInput(confirm_org_id=args.confirm, abandon_foundations=args.abandon_foundations)
    res = await update_org(args.org, "offboard", req)
    emit(args, res, res.message)
    if args.wait:
        done = {"OFFBOARDED", "ACTION_REQUIRED"}
        wf_id = ids.org_workflow_id(args.org)
        show = None if args.json else show_state
        s = await wait_state(wf_id, "OnboardOrganization", done, args.timeout, show)
        emit(args, s, fmt_org(s))
        return 0 if s.state == m.OrgState.OFFBOARDED else 1
    return 0


async def cmd_template(args: argparse.Namespace) -> int:
    s = await query(ids.org_workflow_id(args.org), "OnboardOrganization")
    if not s.artifacts:
        raise CliError("organisation is not registered yet")
    args.output.document(s.artifacts.cloudformation_template)
    return 0


async def cmd_launch_template(args: argparse.Namespace) -> int:
    """Embedded stack only: do what the customer does with the template (launch it in their
    account, here through the emulator's OrganizationAccountAccessRole) and print the role ARN."""
    from bridgehead.settings import get_settings
    from starter.local import customer_admin

    if get_settings().environment != "local":
        raise CliError(
            "launch-template acts as the customer on the embedded stack only (BRIDGEHEAD_ENVIRONMENT=local); "
            "on AWS the customer launches the template in their own account",
            2,
        )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise CliError(
            "AWS_ENDPOINT_URL is not set: export the embedded stack's endpoint (make run prints it)",
            2,
        )
    s = await query(ids.org_workflow_id(args.org), "OnboardOrganization")
    if not s.artifacts:
        raise CliError("organisation is not registered yet")
    account = s.artifacts.permission_policy["Statement"][1]["Resource"].split(":")[4]
    cfn = customer_admin(endpoint, account, "cloudformation")
    name = f"bridgehead-access-{args.org}"
    cfn.create_stack(
        StackName=name,
        TemplateBody=s.artifacts.cloudformation_template,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    arn = cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]["OutputValue"]
    emit(
        args,
        {"stack": name, "account": account, "role_arn": arn},
        f"launched {name} in {account}: {arn}",
    )
    return 0


def register(sub: Any) -> None:
    obs = group(sub, "onboard", "onboard an organisation")
    o = leaf(obs, "start", "register an organisation and wait for its External ID", cmd_onboard)
    o.add_argument("--org", required=True, help="organisation id")
    o.add_argument("--name", help="display name (default: the organisation id)")
    o.add_argument("--email", required=True, help="the organisation admin's e-mail")
    o.add_argument("--account", required=True, help="the customer's AWS account (12 digits)")
    o.add_argument("--regions", help="comma-separated regions (default: the four US regions)")

    o = leaf(obs, "submit-role", "hand over the role the customer launched", cmd_submit_role)
    o.add_argument("--org", required=True, help="organisation id")
    o.add_argument("--role-arn", required=True, help="ARN of the role the template created")
    o.add_argument("--wait", action="store_true", help="wait until READY or ACTION_REQUIRED")
    o.add_argument("--timeout", type=float, default=1800, help="seconds to wait (default 1800)")

    o = leaf(
        obs,
        "create-role",
        "create the role with temporary keys (ASIA... from aws sts get-session-token; "
        "secret and session token read from prompts or CUSTOMER_AWS_SECRET_ACCESS_KEY / "
        "CUSTOMER_AWS_SESSION_TOKEN)",
        cmd_create_role,
    )
    o.add_argument("--org", required=True, help="organisation id")
    o.add_argument("--access-key-id", required=True, help="the temporary access key id")

    o = leaf(
        obs,
        "offboard",
        "remove foundations, image grants, schedule and meter (refused while clusters exist)",
        cmd_offboard,
    )
    o.add_argument("--org", required=True, help="organisation id")
    o.add_argument("--confirm", required=True, metavar="ORG", help="the organisation id again")
    o.add_argument(
        "--abandon-foundations",
        action="store_true",
        help="finish even if the role can no longer delete the foundation stacks",
    )
    o.add_argument("--wait", action="store_true", help="wait until OFFBOARDED or ACTION_REQUIRED")
    o.add_argument("--timeout", type=float, default=3600, help="seconds to wait (default 3600)")

    o = leaf(
        obs, "template", "print the CloudFormation template for the customer's role", cmd_template
    )
    o.add_argument("--org", required=True, help="organisation id")

    o = leaf(
        obs,
        "launch-template",
        "embedded stack only: launch the role template in the customer account as the customer would",
        cmd_launch_template,
    )
    o.add_argument("--org", required=True, help="organisation id")
