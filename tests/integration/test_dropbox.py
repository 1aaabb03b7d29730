"""The S3 drop-box against the dev server and moto: users create and delete clusters by dropping
files, find results next to them, bad requests are rejected with nothing created, a user cannot
write into another user's prefix, and a file is handled once even when two watcher runs see it."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import boto3
import pytest

from bridgehead import models as m
from bridgehead.settings import get_settings
from tests.integration.helpers import onboard_ready

pytestmark = pytest.mark.integration
ACCOUNT = "282828282828"
CONFIG = {"head_instance_type": "t3.medium", "compute_instance_type": "c5.large", "compute_initial_nodes": 1, "compute_max_nodes": 2}


def s3():
    return boto3.client("s3", region_name="us-east-1")


async def wait_object(key: str, timeout: float = 90) -> str:
    bucket = get_settings().inbox_bucket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except s3().exceptions.NoSuchKey:
            await asyncio.sleep(0.5)
    raise AssertionError(f"{key} never appeared; inbox: {[o['Key'] for o in s3().list_objects_v2(Bucket=bucket).get('Contents', [])]}")


async def drop(client, key: str, body: str) -> None:
    s3().put_object(Bucket=get_settings().inbox_bucket, Key=key, Body=body.encode())
    await client.get_schedule_handle("dropbox-watch").trigger()


@pytest.fixture(scope="module")
def inbox():
    return get_settings().inbox_bucket


async def test_dropbox_create_reject_and_delete(client, stack, inbox):
    from starter.__main__ import dropbox_add_user, dropbox_setup

    s = await onboard_ready(client, stack, "drop", ACCOUNT, ["us-east-1"])
    assert s.state == m.OrgState.READY, s
    assert await dropbox_setup(client) == inbox
    desc = await client.get_schedule_handle("dropbox-watch").describe()
    assert desc.schedule.spec.intervals[0].every.total_seconds() <= 60  # picked up within a minute
    dropbox_add_user("alice", "drop")
    dropbox_add_user("bob", "drop")

    # A create request: later the .cf-created file holds the login address; the request is gone.
    await drop(client, "home/alice/c1.cf-create", json.dumps({"region": "us-east-1", **CONFIG}))
    created = await wait_object("home/alice/c1.cf-created")
    assert re.match(r"^\d+\.\d+\.\d+\.\d+$", created.strip()), created
    keys = [o["Key"] for o in s3().list_objects_v2(Bucket=inbox, Prefix="home/alice/")["Contents"]]
    assert "home/alice/c1.cf-create" not in keys
    cfn = stack.customer_admin(ACCOUNT, "cloudformation")
    ec2 = stack.customer_admin(ACCOUNT, "ec2")
    owners = {t["Value"] for r in ec2.describe_instances(Filters=[{"Name": "tag:bridgehead:cluster", "Values": ["c1"]}])["Reservations"]
              for i in r["Instances"] for t in i["Tags"] if t["Key"] == "bridgehead:owner"}  # fmt: skip
    assert owners == {"alice"}

    # Bad requests: each gets a .cf-rejected with the reason, and nothing is created.
    bad = {
        "home/alice/broken.cf-create": ("{not json", "not valid JSON"),
        "home/alice/extra.cf-create": (json.dumps({**CONFIG, "gpu": True}), "gpu"),
        "home/alice/9lives.cf-create": (json.dumps(CONFIG), "must match"),
        "home/alice/c1.cf-create": (json.dumps(CONFIG), "you already have a cluster named c1"),
        "home/mallory/m1.cf-create": (json.dumps(CONFIG), "not registered"),
        "home/bob/c1.cf-delete": ("", "belongs to alice"),
        "home/alice/huge.cf-create": (json.dumps({**CONFIG, "compute_max_nodes": 10_000}), "compute_max_nodes"),
    }
    for key, (body, _) in bad.items():
        s3().put_object(Bucket=inbox, Key=key, Body=body.encode())
    await client.get_schedule_handle("dropbox-watch").trigger()
    for key, (_, needle) in bad.items():
        reason = await wait_object(key.rsplit(".cf-", 1)[0] + ".cf-rejected")
        assert needle in reason, (key, reason)
    stacks = [x["StackName"] for x in cfn.list_stacks()["StackSummaries"]]
    assert not [x for x in stacks if any(n in x for n in ("broken", "extra", "9lives", "m1", "huge"))]
    assert stacks.count("bridgehead-drop--cluster-c1") == 1
    assert (await client.get_workflow_handle("cluster-drop-c1").describe()).status.name == "RUNNING"

    # Deletion by the owner: .cf-deleted appears and the stack is gone.
    await drop(client, "home/alice/c1.cf-delete", "")
    assert "deleted" in (await wait_object("home/alice/c1.cf-deleted")).lower()
    live = [x["StackName"] for x in cfn.list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"]]
    assert "bridgehead-drop--cluster-c1" not in live


async def test_a_file_seen_by_two_watcher_runs_is_handled_once(client, stack, inbox):
    """Two watcher runs over the same listing (what a watcher restarted between reading and acting
    does): Temporal accepts one handler per file version, so one cluster is created."""
    s3().put_object(Bucket=inbox, Key="home/bob/c2.cf-create", Body=json.dumps(CONFIG).encode())
    runs = await asyncio.gather(*(
        client.execute_workflow("DropboxWatch", m.DropboxWatchInput(bucket=inbox), id=f"dropbox-watch-test-{uuid.uuid4().hex[:6]}",
                                task_queue="bridgehead", result_type=int)
        for _ in range(3)
    ))  # fmt: skip
    assert sum(runs) <= 1, runs  # at most one start in all (the scheduled watcher may have taken it first)
    await wait_object("home/bob/c2.cf-created")
    handlers = [w async for w in client.list_workflows("WorkflowType = 'DropboxRequest' AND OrgId = 'drop' AND ClusterName = 'c2'")]
    assert len(handlers) == 1, [h.id for h in handlers]
    stacks = [x["StackName"] for x in stack.customer_admin(ACCOUNT, "cloudformation").list_stacks()["StackSummaries"]]
    assert stacks.count("bridgehead-drop--cluster-c2") == 1
    # Re-dropping the very same content later is a new request (a new upload), and is refused by name.
    s3().put_object(Bucket=inbox, Key="home/bob/c2.cf-create", Body=json.dumps(CONFIG).encode())
    await client.get_schedule_handle("dropbox-watch").trigger()
    assert "already have a cluster named c2" in await wait_object("home/bob/c2.cf-rejected")


def test_dropbox_user_policy_confines_each_user_to_their_prefix():
    """Evaluate policies/dropbox-user.json as IAM would for user alice (variables substituted,
    wildcards matched): her prefix yes, bob's prefix and the bucket root no."""
    from fnmatch import fnmatchcase

    from bridgehead.policies import POLICY_DIR

    doc = json.loads((POLICY_DIR / "dropbox-user.json").read_text().replace("{{PARTITION}}", "aws").replace("{{INBOX_BUCKET}}", "inbox"))

    def allowed(user: str, action: str, resource: str, prefix: str | None = None) -> bool:
        for st in doc["Statement"]:
            actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
            res = st["Resource"].replace("${aws:username}", user)
            if st["Effect"] != "Allow" or action not in actions or not fnmatchcase(resource, res):
                continue
            cond = st.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
            if cond is None or (prefix is not None and any(fnmatchcase(prefix, c.replace("${aws:username}", user)) for c in cond)):
                return True
        return False

    assert allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/home/alice/c1.cf-create")
    assert not allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/home/bob/c1.cf-create")
    assert not allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/home/alice-evil/c1.cf-create")
    assert not allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/c1.cf-create")
    assert allowed("alice", "s3:ListBucket", "arn:aws:s3:::inbox", prefix="home/alice/")
    assert not allowed("alice", "s3:ListBucket", "arn:aws:s3:::inbox", prefix="home/bob/")
    assert not allowed("alice", "s3:ListBucket", "arn:aws:s3:::inbox", prefix="")
