"""``python -m starter``: start, steer and inspect Bridgehead workflows; run the local stack.

Exit codes: 0 success; 1 the workflow/operation failed; 2 bad input; 3 cannot reach Temporal;
130 interrupted. Human output by default, ``--json`` for scripts. Installed as the ``bridgehead``
command too; ``bridgehead completion bash`` prints a shell-completion script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bridgehead import ids
from bridgehead import models as m

# workflow type -> (public input model, workflow id from the input, query name, query result).
# Ids come from bridgehead.ids, the same functions the workflows check their id against.
WORKFLOWS: dict[str, tuple[type[BaseModel], Callable[[Any], str], str | None, type[BaseModel] | None]] = {
    "OnboardOrganization": (m.OnboardOrganizationInput, lambda i: ids.org_workflow_id(i.org_id), "status", m.OrgStatus),
    # A manual verification gets a sequence number far above the organisation's own.
    "VerifyRole": (m.VerifyRoleInput, lambda i: ids.verify_workflow_id(i.org_id, int(time.time())), None, None),
    "ShareImages": (m.ShareImagesInput, lambda i: ids.images_workflow_id(i.org_id), "status", m.ShareImagesResult),
    "ProvisionRegion": (m.ProvisionRegionInput, lambda i: ids.region_workflow_id(i.org_id, i.region), "status", m.FoundationStatus),
    "CleanupRegion": (m.CleanupRegionInput, lambda i: ids.cleanup_workflow_id(i.org_id, i.region), None, None),
    "ClusterLifecycle": (m.ClusterLifecycleInput, lambda i: ids.cluster_workflow_id(i.org_id, i.name), "status", m.ClusterStatus),
    "BillingMeter": (m.BillingMeterInput, lambda i: ids.billing_workflow_id(i.org_id), "usage", m.UsageTotals),
    "ReverifyOrganization": (m.ReverifyInput, lambda i: ids.reverify_schedule_id(i.org_id) + "-manual", None, None),
    "DropboxWatch": (m.DropboxWatchInput, lambda i: ids.DROPBOX_WATCH_SCHEDULE + "-manual", None, None),
    "MarketplaceSubscription": (m.MarketplaceSubscriptionInput, lambda i: ids.marketplace_workflow_id(i.org_id), "status", m.MarketplaceStatus),
}


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def emit(args: argparse.Namespace, value: Any, human: str | None = None) -> None:
    if args.json:
        if isinstance(value, BaseModel):
            print(value.model_dump_json(indent=2))
        else:
            print(json.dumps(value, indent=2, default=str))
    else:
        print(human if human is not None else (value.model_dump_json(indent=2) if isinstance(value, BaseModel) else value))


def invalid(e: ValidationError, what: str) -> CliError:
    """A pydantic error as the CLI shows it: one line per field, exit code 2."""
    from bridgehead.messages import describe_error

    lines = [f"  {describe_error(err)}" for err in e.errors()]
    return CliError(f"invalid {what}:\n" + "\n".join(lines), 2)


def parse_input(model: type[BaseModel], raw: str) -> BaseModel:
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as e:
            raise CliError(f"cannot read input file {raw[1:]}: {e.strerror}", 2) from None
    else:
        text = raw
    try:
        return model.model_validate_json(text)
    except ValidationError as e:
        raise invalid(e, model.__name__) from None


async def client() -> Any:
    from bridgehead.client import make_client
    from bridgehead.settings import get_settings

    try:
        get_settings()
    except ValidationError as e:
        hint = "; with the embedded stack (make run): export BRIDGEHEAD_ENVIRONMENT=local"
        raise CliError("configuration: " + "; ".join(err["msg"] for err in e.errors()) + hint, 2) from None
    try:
        return await make_client()
    except Exception as e:  # noqa: BLE001
        raise CliError(f"cannot connect to Temporal ({e}); is the stack up? (make run)", 3) from None


def workflow_id(wf_type: str, inp: BaseModel) -> str:
    return WORKFLOWS[wf_type][1](inp)


def search_attrs_for(inp: BaseModel) -> Any:
    from workflows._common import search_attributes

    values = {}
    if getattr(inp, "org_id", None):
        values["org_id"] = inp.org_id  # type: ignore[attr-defined]
    if isinstance(inp, m.ClusterLifecycleInput):
        values.update(cluster=inp.name, region=inp.region, status="VALIDATING")
    elif getattr(inp, "region", None):
        values["region"] = inp.region  # type: ignore[attr-defined]
    return search_attributes(**values)


def summary_for(wf_type: str, inp: BaseModel) -> str:
    """The one-line summary the Web UI shows for a workflow started here."""
    f = inp.model_dump()
    what = {"ClusterLifecycle": "cluster {name} in {region} for {org_id}", "OnboardOrganization": "onboard {org_id} (account {aws_account_id})",
            "ProvisionRegion": "foundation of {org_id} in {region}", "CleanupRegion": "clean up {org_id} in {region}"}.get(wf_type)  # fmt: skip
    try:
        return (what or wf_type + " {org_id}").format(**f)
    except KeyError:
        return wf_type


async def start(wf_type: str, inp: BaseModel, wf_id: str | None = None) -> Any:
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from bridgehead.settings import get_settings

    c = await client()
    wf_id = wf_id or workflow_id(wf_type, inp)
    try:
        return await c.start_workflow(
            wf_type, inp, id=wf_id, task_queue=get_settings().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=search_attrs_for(inp), static_summary=summary_for(wf_type, inp),
        )  # fmt: skip
    except WorkflowAlreadyStartedError:
        raise CliError(f"{wf_id} is already running (or completed and may not be reused); query it with `starter status {wf_id}`") from None


async def query(wf_id: str, wf_type: str | None = None) -> Any:
    c = await client()
    h = c.get_workflow_handle(wf_id)
    if wf_type is None:
        wf_type = (await h.describe()).workflow_type
    _, _, qname, qtype = WORKFLOWS.get(wf_type, (None, None, None, None))
    if qname is None:
        raise CliError(f"{wf_type} has no status query; use `temporal workflow show --workflow-id {wf_id}`")
    return await h.query(qname, result_type=qtype)


def fmt_org(s: m.OrgStatus) -> str:
    lines = [f"organisation {s.org_id}: {s.state.value}", f"  external id: {s.external_id}", f"  role: {s.role_arn or '-'}"]
    for region, p in s.regions.items():
        lines.append(f"  {region}: images {p.images}, foundation {p.foundation} {p.detail}")
    for c in s.failed_checks:
        lines.append(f"  FAILED {c.name}: {c.detail}\n    fix: {c.remedy}")
    if s.last_error:
        lines.append(f"  last error: {s.last_error}")
    if s.steps:
        lines.append("  progress:")
        lines += [f"    {step}" for step in s.steps[-12:]]
    return "\n".join(lines)


def fmt_cluster(s: m.ClusterStatus) -> str:
    lines = [f"cluster {s.name} ({s.org_id}, {s.region}): {s.state.value}", f"  stack: {s.stack_name}", f"  compute nodes: {s.compute_nodes}"]
    if s.login_address:
        lines.append(f"  login: {s.login_address}")
    if s.failure_reason:
        lines.append(f"  failure: {s.failure_resource or ''} {s.failure_reason}")
    for e in s.latest_events[:3]:
        lines.append(f"  {e.timestamp:%H:%M:%S} {e.logical_id} {e.status} {e.reason}")
    return "\n".join(lines)


def show_cluster_progress(s: m.ClusterStatus) -> None:
    event = s.latest_events[0] if s.latest_events else None
    detail = f"  (latest: {event.logical_id} {event.status}{' ' + event.reason if event.reason else ''})" if event else ""
    print(f"  {time.strftime('%H:%M:%S')} {s.state.value}{detail}", flush=True)


async def wait_state(wf_id: str, wf_type: str, done: set[str], timeout: float, show: Any = None) -> Any:
    """Poll the status query until a state in ``done``; ``show`` gets each change of state or of
    the latest stack event (live progress for long waits)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        s = await query(wf_id, wf_type)
        marker = (s.state, s.latest_events[0].model_dump_json() if getattr(s, "latest_events", None) else None)
        if show and marker != last:
            show(s)
            last = marker
        if s.state.value in done:
            return s
        if time.monotonic() > deadline:
            raise CliError(f"timed out waiting for {wf_id} to reach {sorted(done)}; it is {s.state.value}")
        await asyncio.sleep(1)


# --- commands ---------------------------------------------------------------------------------------
async def cmd_start(args: argparse.Namespace) -> int:
    model = WORKFLOWS[args.type][0]
    inp = parse_input(model, args.input)
    h = await start(args.type, inp, args.workflow_id)
    emit(args, {"workflow_id": h.id, "run_id": h.result_run_id}, f"started {args.type} as {h.id}")
    if args.wait:
        result = await h.result()
        emit(args, result)
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    s = await query(args.workflow_id)
    human = fmt_org(s) if isinstance(s, m.OrgStatus) else fmt_cluster(s) if isinstance(s, m.ClusterStatus) else None
    emit(args, s, human)
    return 0


async def cmd_signal(args: argparse.Namespace) -> int:
    c = await client()
    await c.get_workflow_handle(args.workflow_id).signal(args.name)
    emit(args, {"signalled": args.name, "workflow_id": args.workflow_id}, f"sent {args.name} to {args.workflow_id}")
    return 0


async def cmd_onboard(args: argparse.Namespace) -> int:
    inp = m.OnboardOrganizationInput(
        org_id=args.org, display_name=args.name or args.org, admin_email=args.email, aws_account_id=args.account,
        **({"regions": args.regions.split(",")} if args.regions else {}),
    )  # fmt: skip
    h = await start("OnboardOrganization", inp)
    s = await wait_state(h.id, "OnboardOrganization", {"AWAITING_ROLE", "ACTION_REQUIRED", "READY"}, 60)
    emit(args, s, fmt_org(s) + "\n\nnext: launch the role template (starter onboard template --org ...) and submit the role ARN")
    return 0


async def cmd_submit_role(args: argparse.Namespace) -> int:
    c = await client()
    res = await c.get_workflow_handle(ids.org_workflow_id(args.org)).execute_update("submit_role", m.SubmitRoleInput(role_arn=args.role_arn), result_type=m.UpdateResult)
    emit(args, res, res.message)
    if args.wait:
        s = await wait_state(ids.org_workflow_id(args.org), "OnboardOrganization", {"READY", "ACTION_REQUIRED"}, args.timeout, None)
        emit(args, s, fmt_org(s))
        return 0 if s.state == m.OrgState.READY else 1
    return 0


async def cmd_create_role(args: argparse.Namespace) -> int:
    import getpass

    secret = os.environ.get("CUSTOMER_AWS_SECRET_ACCESS_KEY") or getpass.getpass("secret access key: ")
    token = os.environ.get("CUSTOMER_AWS_SESSION_TOKEN") or getpass.getpass("session token: ")
    keys = m.CreateRoleForMeInput(access_key_id=args.access_key_id, secret_access_key=secret, session_token=token)
    c = await client()
    res = await c.get_workflow_handle(ids.org_workflow_id(args.org)).execute_update("create_role_for_me", keys, result_type=m.UpdateResult)
    emit(args, res, res.message)
    return 0


async def cmd_offboard(args: argparse.Namespace) -> int:
    req = m.OffboardInput(confirm_org_id=args.confirm, abandon_foundations=args.abandon_foundations)
    c = await client()
    res = await c.get_workflow_handle(ids.org_workflow_id(args.org)).execute_update("offboard", req, result_type=m.UpdateResult)
    emit(args, res, res.message)
    if args.wait:
        s = await wait_state(ids.org_workflow_id(args.org), "OnboardOrganization", {"OFFBOARDED", "ACTION_REQUIRED"}, args.timeout,
                             None if args.json else lambda s: print(f"  {time.strftime('%H:%M:%S')} {s.state.value}", flush=True))  # fmt: skip
        emit(args, s, fmt_org(s))
        return 0 if s.state == m.OrgState.OFFBOARDED else 1
    return 0


async def cmd_template(args: argparse.Namespace) -> int:
    s = await query(ids.org_workflow_id(args.org), "OnboardOrganization")
    if not s.artifacts:
        raise CliError("organisation is not registered yet")
    print(s.artifacts.cloudformation_template)
    return 0


async def cmd_cluster_create(args: argparse.Namespace) -> int:
    config = parse_input(m.ClusterConfig, args.config)
    try:
        inp = m.ClusterLifecycleInput(org_id=args.org, name=args.name, region=args.region, config=config, owner=args.owner, dry_run=args.dry_run)
    except ValidationError as e:
        raise CliError("invalid cluster request: " + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()), 2) from None
    h = await start("ClusterLifecycle", inp)
    if args.dry_run:
        res = m.ClusterResult.model_validate(await h.result())
        print(res.rendered_template)
        return 0
    emit(args, {"workflow_id": h.id}, f"creating {h.id}")
    if not args.wait:
        return 0
    s = await wait_state(h.id, "ClusterLifecycle", {"RUNNING", "FAILED", "CANCELLED", "DELETED"}, args.timeout,
                         None if args.json else show_cluster_progress)  # fmt: skip
    emit(args, s, fmt_cluster(s))
    return 0 if s.state == m.ClusterState.RUNNING else 1


async def cmd_cluster_delete(args: argparse.Namespace) -> int:
    wf_id = ids.cluster_workflow_id(args.org, args.name)
    c = await client()
    await c.get_workflow_handle(wf_id).signal("delete")
    if args.wait:
        s = await wait_state(wf_id, "ClusterLifecycle", {"DELETED", "FAILED"}, args.timeout, None if args.json else show_cluster_progress)
        emit(args, s, fmt_cluster(s))
        return 0 if s.state == m.ClusterState.DELETED else 1
    emit(args, {"signalled": "delete", "workflow_id": wf_id}, f"delete requested for {wf_id}")
    return 0


async def cmd_billing_report(args: argparse.Namespace) -> int:
    """The bill from the ledger, read by the worker (``BillingReport``): needs only Temporal."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from bridgehead import ids
    from bridgehead.settings import get_settings

    c = await client()
    inp = m.BillingReportInput(org_id=args.org, month=args.month)
    rep: m.BillingReport = await c.execute_workflow(
        "BillingReport", inp, id=ids.billing_report_workflow_id(args.org, args.month), task_queue=get_settings().task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        result_type=m.BillingReport,
    )  # fmt: skip
    data = [
        {"cluster": x.cluster, "instance_type": x.instance_type, "node_minutes": x.node_minutes, "cost_usd": str(x.cost_usd),
         "corrections_node_minutes": x.corrections_node_minutes, "corrections_usd": str(x.corrections_usd),
         "net_node_minutes": x.net_node_minutes, "net_usd": str(x.net_usd)}
        for x in rep.lines
    ]  # fmt: skip
    total = {"node_minutes": rep.node_minutes, "cost_usd": str(rep.cost_usd), "corrections_node_minutes": rep.corrections_node_minutes,
             "corrections_usd": str(rep.corrections_usd), "net_node_minutes": rep.net_node_minutes, "net_usd": str(rep.net_usd)}  # fmt: skip
    if args.csv:
        cols = ["cluster", "instance_type", "node_minutes", "cost_usd", "corrections_node_minutes", "corrections_usd", "net_node_minutes", "net_usd"]
        print(",".join(cols))
        for d in data:
            print(",".join(str(d[k]) for k in cols))
        print(",".join(["TOTAL", ""] + [str(total[k]) for k in cols[2:]]))
        return 0
    lines = []
    for d in data:
        line = f"{d['cluster']:20} {d['instance_type']:12} {d['node_minutes']:>8} min  ${d['cost_usd']}"
        if d["corrections_node_minutes"]:
            line += f"  corrections {d['corrections_node_minutes']:+d} min ${d['corrections_usd']}  net {d['net_node_minutes']} min ${d['net_usd']}"
        lines.append(line)
    for cluster, minutes in sorted(rep.in_progress.items()):
        lines.append(f"{cluster:20} {'':12} in progress ({minutes} node-minutes so far, billed when the hour closes)")
    if not lines:
        lines.append("(no usage)")
    human = "\n".join(lines) + f"\nTOTAL {rep.node_minutes} node-minutes, ${rep.cost_usd}"
    if rep.corrections_node_minutes or rep.corrections_usd:
        human += f"; corrections {rep.corrections_node_minutes:+d} node-minutes, ${rep.corrections_usd}; net ${rep.net_usd}"
    for title, items in (("not metered through AWS Marketplace", rep.not_metered), ("metering defects", rep.defects), ("credits owed", rep.credits)):
        if items:
            human += f"\n{title}:\n" + "\n".join(f"  {x}" for x in items)
    emit(args, {"org_id": args.org, "month": args.month, "lines": data, "total": total, "in_progress": rep.in_progress,
                "not_metered": rep.not_metered, "defects": rep.defects, "credits": rep.credits}, human)  # fmt: skip
    return 0


async def cmd_marketplace_register(args: argparse.Namespace) -> int:
    """Start ``MarketplaceSubscription`` for a buyer's registration token (encrypted in transit and history)."""
    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from bridgehead import ids
    from bridgehead.settings import get_settings

    inp = m.MarketplaceSubscriptionInput(org_id=args.org, registration_token=token, allow_different_account=args.allow_different_account)
    wf_id = ids.marketplace_workflow_id(args.org)
    try:
        # A buyer may come back after a subscription ended: an ended run's id is reused.
        h = await (await client()).start_workflow(
            "MarketplaceSubscription", inp, id=wf_id, task_queue=get_settings().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=search_attrs_for(inp), static_summary=f"AWS Marketplace subscription of {args.org}",
        )  # fmt: skip
    except WorkflowAlreadyStartedError:
        raise CliError(f"{wf_id} is running: the organisation already has a Marketplace buyer (`starter status {wf_id}`)") from None
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
            emit(args, s, f"{h.id}: {s.state.value} (AWS account {s.customer_aws_account_id}, customer {s.customer_identifier})")
            return 0
        if time.monotonic() > deadline:
            raise CliError(f"{h.id} did not link the buyer within {args.timeout:.0f} s")
        await asyncio.sleep(0.5)


async def dropbox_setup(c: Any) -> str:
    """Create the inbox bucket (platform account) and the Schedule that watches it. Idempotent."""
    from datetime import timedelta

    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
    )

    from activities.aws import Aws
    from bridgehead.settings import get_settings

    settings = get_settings()
    s3 = Aws(settings).platform("s3", settings.platform_region)
    try:
        kwargs: dict[str, Any] = {"Bucket": settings.inbox_bucket}
        if settings.platform_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.platform_region}
        s3.create_bucket(**kwargs)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_public_access_block(Bucket=settings.inbox_bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})  # fmt: skip
    # Versioned, so a request is read and removed by the version that was listed: a new upload to the
    # same key while the first is handled is never lost. Old versions expire after a day.
    s3.put_bucket_versioning(Bucket=settings.inbox_bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=settings.inbox_bucket, LifecycleConfiguration={"Rules": [{
        "ID": "expire-handled-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1}, "Expiration": {"ExpiredObjectDeleteMarker": True}}]})  # fmt: skip
    schedule = Schedule(
        action=ScheduleActionStartWorkflow("DropboxWatch", m.DropboxWatchInput(bucket=settings.inbox_bucket), id=ids.DROPBOX_WATCH_SCHEDULE,
                                           task_queue=settings.task_queue, static_summary="look for drop-box requests"),  # fmt: skip
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.dropbox_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await c.create_schedule(ids.DROPBOX_WATCH_SCHEDULE, schedule)
    except ScheduleAlreadyRunningError:
        pass
    return settings.inbox_bucket


def dropbox_add_user(user: str, org_id: str, owner: str | None = None) -> None:
    """Let ``user`` (an IAM user name, i.e. ``${aws:username}``) use the drop-box for ``org_id``."""
    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    m.DropboxTarget(bucket="x", user=user)  # validates the user name
    reg = Registry(Aws(get_settings()))
    reg.org(org_id)  # refuses unknown organisations
    reg.put_dropbox_user(user, org_id, owner or user)


async def cmd_dropbox_setup(args: argparse.Namespace) -> int:
    bucket = await dropbox_setup(await client())
    emit(args, {"bucket": bucket, "schedule": "dropbox-watch"}, f"drop-box ready: s3://{bucket}/home/<user>/<CLUSTER>.cf-create (watched by schedule dropbox-watch)")
    return 0


async def cmd_dropbox_add_user(args: argparse.Namespace) -> int:
    try:
        dropbox_add_user(args.user, args.org, args.owner)
    except ValidationError as e:
        raise CliError(f"invalid user name: {e.errors()[0]['msg']}", 2) from None
    emit(args, {"user": args.user, "org_id": args.org}, f"{args.user} may now use s3://.../home/{args.user}/ for {args.org}")
    return 0


async def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(WORKFLOWS[args.type][0].model_json_schema(), indent=2))
    return 0


async def cmd_up(args: argparse.Namespace) -> int:
    from starter.local import LocalStack

    stack = LocalStack(temporal_port=args.port, ui_port=args.ui_port, moto_port=args.aws_port)
    print("starting the embedded stack (moto server, Temporal dev server, worker)...", flush=True)
    try:
        stack.start()
    except RuntimeError as e:
        raise CliError(str(e), 1) from None
    os.environ.update(stack.env())
    from bridgehead.settings import get_settings

    get_settings.cache_clear()
    env_line = " ".join(f"{k}={v}" for k, v in stack.env().items() if k.startswith(("TEMPORAL_ADDRESS", "AWS_ENDPOINT", "BRIDGEHEAD_ENVIRONMENT")))
    print(f"""
Bridgehead is up.
  Temporal Web UI : {stack.ui_url}
  Temporal        : {stack.temporal_address}   AWS emulator: {stack.aws_endpoint}
  state & logs    : {stack.state_dir}

Try (in another terminal, from this folder):
  export {env_line}
  .venv/bin/temporal workflow start --type OnboardOrganization --task-queue bridgehead --workflow-id org-acme \\
      --input '{{"org_id":"acme","display_name":"Acme","admin_email":"admin@acme.example","aws_account_id":"222222222222"}}'
  .venv/bin/python -m starter status org-acme
  .venv/bin/temporal workflow signal --workflow-id cluster-acme-c1 --name delete
Press Ctrl-C to stop everything.
""", flush=True)
    await dropbox_setup(await client())
    try:
        if args.demo:
            await demo(stack)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if not args.exit_after_demo:
            await stop.wait()
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


async def demo(stack: Any) -> None:
    """One organisation and one cluster through the whole lifecycle."""
    from starter.local import DEMO_CUSTOMER_ACCOUNT, customer_admin

    org = f"demo{int(time.time()) % 100000}"
    print(f"[demo] onboarding organisation {org} (customer account {DEMO_CUSTOMER_ACCOUNT})", flush=True)
    h = await start("OnboardOrganization", m.OnboardOrganizationInput(org_id=org, display_name="Demo Org", admin_email="admin@demo.example",
                                                                       aws_account_id=DEMO_CUSTOMER_ACCOUNT))  # fmt: skip
    s = await wait_state(h.id, "OnboardOrganization", {"AWAITING_ROLE"}, 60)
    print(f"[demo] External ID issued: {s.external_id}; the customer launches the role template", flush=True)
    cfn = customer_admin(stack.aws_endpoint, DEMO_CUSTOMER_ACCOUNT, "cloudformation")
    stack_name = f"bridgehead-access-{org}"
    cfn.create_stack(StackName=stack_name, TemplateBody=s.artifacts.cloudformation_template, Capabilities=["CAPABILITY_NAMED_IAM"])
    role_arn = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Outputs"][0]["OutputValue"]
    c = await client()
    await c.get_workflow_handle(h.id).execute_update("submit_role", m.SubmitRoleInput(role_arn=role_arn), result_type=m.UpdateResult)
    s = await wait_state(h.id, "OnboardOrganization", {"READY", "ACTION_REQUIRED"}, 300, lambda s: print(f"[demo]   org {s.state.value}", flush=True))
    if s.state != m.OrgState.READY:
        raise CliError(fmt_org(s))
    print(fmt_org(s), flush=True)
    cfg = m.ClusterConfig(head_instance_type="t3.medium", compute_instance_type="c5.xlarge", compute_initial_nodes=2, compute_max_nodes=4)
    ch = await start("ClusterLifecycle", m.ClusterLifecycleInput(org_id=org, name="c1", region="us-east-2", config=cfg, owner="alice"))
    s2 = await wait_state(ch.id, "ClusterLifecycle", {"RUNNING", "FAILED"}, 300, lambda s: print(f"[demo]   cluster {s.state.value}", flush=True))
    print(fmt_cluster(s2), flush=True)
    await c.get_workflow_handle(ch.id).signal("delete")
    s2 = await wait_state(ch.id, "ClusterLifecycle", {"DELETED", "FAILED"}, 300, lambda s: print(f"[demo]   cluster {s.state.value}", flush=True))
    print(f"[demo] done: cluster {s2.state.value}. Open {stack.ui_url} to see every workflow.", flush=True)


def month_arg(value: str) -> str:
    import re

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"month must be YYYY-MM (e.g. 2026-11), not {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m starter", description="Start and steer Bridgehead workflows.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="run the embedded stack (Temporal dev server, moto, worker)")
    up.add_argument("--port", type=int, default=7233)
    up.add_argument("--ui-port", type=int, default=8233)
    up.add_argument("--aws-port", type=int, default=5000)
    up.add_argument("--demo", action="store_true", help="drive one organisation and one cluster through the lifecycle")
    up.add_argument("--exit-after-demo", action="store_true")
    up.set_defaults(fn=cmd_up)

    s = sub.add_parser("start", help="start any workflow with JSON input (the same JSON as the UI and temporal CLI)")
    s.add_argument("type", choices=sorted(WORKFLOWS))
    s.add_argument("input", help="JSON, or @file.json")
    s.add_argument("--workflow-id")
    s.add_argument("--wait", action="store_true")
    s.set_defaults(fn=cmd_start)

    st = sub.add_parser("status", help="query a workflow's status")
    st.add_argument("workflow_id")
    st.set_defaults(fn=cmd_status)

    sg = sub.add_parser("signal", help="send a signal (cancel, delete, reverify)")
    sg.add_argument("workflow_id")
    sg.add_argument("name", choices=["cancel", "delete", "reverify"])
    sg.set_defaults(fn=cmd_signal)

    sc = sub.add_parser("schema", help="JSON schema of a workflow's input")
    sc.add_argument("type", choices=sorted(WORKFLOWS))
    sc.set_defaults(fn=cmd_schema)

    ob = sub.add_parser("onboard", help="onboard an organisation")
    obs = ob.add_subparsers(dest="sub", required=True)
    o = obs.add_parser("start")
    o.add_argument("--org", required=True)
    o.add_argument("--name")
    o.add_argument("--email", required=True)
    o.add_argument("--account", required=True)
    o.add_argument("--regions")
    o.set_defaults(fn=cmd_onboard)
    o = obs.add_parser("submit-role")
    o.add_argument("--org", required=True)
    o.add_argument("--role-arn", required=True)
    o.add_argument("--wait", action="store_true")
    o.add_argument("--timeout", type=float, default=1800)
    o.set_defaults(fn=cmd_submit_role)
    o = obs.add_parser("create-role", help="create the role with temporary keys (ASIA... from aws sts get-session-token; secret and session token read from prompts or CUSTOMER_AWS_SECRET_ACCESS_KEY / CUSTOMER_AWS_SESSION_TOKEN)")
    o.add_argument("--org", required=True)
    o.add_argument("--access-key-id", required=True)
    o.set_defaults(fn=cmd_create_role)
    o = obs.add_parser("offboard", help="remove foundations, image grants, schedule and meter (refused while clusters exist)")
    o.add_argument("--org", required=True)
    o.add_argument("--confirm", required=True, metavar="ORG", help="the organisation id again")
    o.add_argument("--abandon-foundations", action="store_true", help="finish even if the role can no longer delete the foundation stacks")
    o.add_argument("--wait", action="store_true")
    o.add_argument("--timeout", type=float, default=3600)
    o.set_defaults(fn=cmd_offboard)
    o = obs.add_parser("template", help="print the CloudFormation template for the customer's role")
    o.add_argument("--org", required=True)
    o.set_defaults(fn=cmd_template)

    cl = sub.add_parser("cluster", help="create and delete clusters")
    cls = cl.add_subparsers(dest="sub", required=True)
    c = cls.add_parser("create")
    c.add_argument("--org", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--region", required=True)
    c.add_argument("--config", required=True, help="short config JSON or @file.json")
    c.add_argument("--owner")
    c.add_argument("--dry-run", action="store_true")
    c.add_argument("--wait", action="store_true")
    c.add_argument("--timeout", type=float, default=3 * 3600)
    c.set_defaults(fn=cmd_cluster_create)
    c = cls.add_parser("delete")
    c.add_argument("--org", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--wait", action="store_true")
    c.add_argument("--timeout", type=float, default=3 * 3600)
    c.set_defaults(fn=cmd_cluster_delete)

    d = sub.add_parser("dropbox", help="the S3 drop-box for users without AWS rights")
    ds = d.add_subparsers(dest="sub", required=True)
    x = ds.add_parser("setup", help="create the inbox bucket and the watching schedule")
    x.set_defaults(fn=cmd_dropbox_setup)
    x = ds.add_parser("add-user", help="map a user to an organisation")
    x.add_argument("--user", required=True)
    x.add_argument("--org", required=True)
    x.add_argument("--owner", help="owner tag for the user's clusters (default: the user)")
    x.set_defaults(fn=cmd_dropbox_add_user)

    b = sub.add_parser("billing", help="billing reports from the ledger")
    bs = b.add_subparsers(dest="sub", required=True)
    r = bs.add_parser("report")
    r.add_argument("--org", required=True)
    r.add_argument("--month", type=month_arg, help="YYYY-MM")
    r.add_argument("--csv", action="store_true")
    r.set_defaults(fn=cmd_billing_report)

    mp = sub.add_parser("marketplace", help="AWS Marketplace buyers")
    mps = mp.add_subparsers(dest="sub", required=True)
    x = mps.add_parser("register", help="link the buyer of a registration token to an organisation (MarketplaceSubscription)")
    x.add_argument("--org", required=True)
    x.add_argument("--token", required=True, help="the x-amzn-marketplace-token AWS Marketplace posted ('-': read it from stdin)")
    x.add_argument("--allow-different-account", action="store_true", help="link even if the buyer's AWS account is not the org's")
    x.add_argument("--wait", action="store_true")
    x.add_argument("--timeout", type=float, default=120)
    x.set_defaults(fn=cmd_marketplace_register)

    x = sub.add_parser("completion", help="print a completion script: eval \"$(bridgehead completion bash)\"")
    x.add_argument("shell", choices=["bash", "zsh"])
    x.set_defaults(fn=cmd_completion)
    return p


def completion_tree(parser: argparse.ArgumentParser, path: str = "") -> dict[str, list[str]]:
    """Words that may follow each command path (subcommands, options, choices), from the parser."""
    words: list[str] = []
    tree: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words.append(name)
                tree.update(completion_tree(child, f"{path} {name}".strip()))
        elif action.option_strings:
            words.extend(o for o in action.option_strings if o.startswith("--"))
        elif action.choices:
            words.extend(str(c) for c in action.choices)
    tree[path] = words
    return tree


async def cmd_completion(args: argparse.Namespace) -> int:
    tree = completion_tree(build_parser())
    # Keys are "_" for the top level and "_ cluster create" below it (bash refuses an empty key).
    entries = "\n".join(f'  ["{f"_ {k}".strip()}"]="{" ".join(v)}"' for k, v in sorted(tree.items()))
    script = f"""# bridgehead / python -m starter completion ({args.shell})
{"autoload -U +X bashcompinit && bashcompinit" if args.shell == "zsh" else ""}
declare -A _BRIDGEHEAD_WORDS=(
{entries}
)
_bridgehead_complete() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" path="_" w i=1
  [[ "${{COMP_WORDS[0]}}" == python* ]] && i=3
  for (( ; i<COMP_CWORD; i++ )); do
    w="${{COMP_WORDS[i]}}"
    [[ "$w" == -* ]] && continue
    local next="$path $w"
    [[ -n "${{_BRIDGEHEAD_WORDS[$next]+x}}" ]] && path="$next"
  done
  COMPREPLY=( $(compgen -W "${{_BRIDGEHEAD_WORDS[$path]}}" -- "$cur") )
}}
complete -F _bridgehead_complete bridgehead
"""
    print(script)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.fn(args))
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except ValidationError as e:  # a model built from flags (onboard start, cluster create...)
        print(f"error: {invalid(e, e.title)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI reports, it does not dump tracebacks
        msg = getattr(e, "message", None) or str(e)
        cause = getattr(e, "cause", None)
        while cause is not None:
            msg = getattr(cause, "message", None) or str(cause)
            cause = getattr(cause, "cause", None)
        print(f"error: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1


def run() -> None:
    """Console entry point. Exits with ``os._exit`` after flushing: the SDK's core runtime can abort
    during interpreter shutdown (sdk-python#300) and turn a success into exit code 134. A reader
    that went away (``| head``) is not an error."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        code = 0
    try:
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":
    run()
