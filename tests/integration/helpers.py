from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bridgehead import models as m
from starter.local import LocalStack, customer_admin


async def wait_for(handle: Any, qname: str, rtype: type, pred: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        s = await handle.query(qname, result_type=rtype)
        if pred(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status: {s}")
        await asyncio.sleep(0.3)


async def start_org(client: Any, org_id: str, account: str, regions: list[str] | None = None) -> Any:
    inp = m.OnboardOrganizationInput(org_id=org_id, display_name=org_id.title(), admin_email=f"admin@{org_id}.example",
                                     aws_account_id=account, **({"regions": regions} if regions else {}))  # fmt: skip
    h = await client.start_workflow("OnboardOrganization", inp, id=f"org-{org_id}", task_queue="bridgehead")
    await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE)
    return h


def launch_role_template(stack: LocalStack, account: str, status: m.OrgStatus, stack_name: str, mutate: Any = None) -> str:
    """The customer launches our template (optionally altered) and returns the role ARN."""
    tpl = json.loads(status.artifacts.cloudformation_template)
    if mutate:
        mutate(tpl)
    cfn = customer_admin(stack.aws_endpoint, account, "cloudformation")
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(tpl), Capabilities=["CAPABILITY_NAMED_IAM"])
    return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Outputs"][0]["OutputValue"]


async def onboard_ready(client: Any, stack: LocalStack, org_id: str, account: str, regions: list[str] | None = None) -> m.OrgStatus:
    h = await start_org(client, org_id, account, regions)
    s = await h.query("status", result_type=m.OrgStatus)
    arn = launch_role_template(stack, account, s, f"bridgehead-access-{org_id}")
    await h.execute_update("submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult)
    return await wait_for(h, "status", m.OrgStatus, lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED), 300)


async def history_json(client: Any, wf_id: str) -> str:
    h = client.get_workflow_handle(wf_id)
    hist = await h.fetch_history()
    return hist.to_json()
