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
from tests.support.snapshot import SECTIONS, diff, snapshot_async

pytestmark = pytest.mark.integration
ACCOUNT = "282828282828"
CONFIG = {
    "head_instance_type": "t3.medium",
    "compute_instance_type": "c5.large",
    "compute_initial_nodes": 1,
    "compute_max_nodes": 2,
}


def s3():
    return boto3.client("s3", region_name="us-east-1")


async def wait_object(key: str, timeout: float = 90, every: float = 0.5) -> str:
    bucket = get_settings().inbox_bucket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except s3().exceptions.NoSuchKey:
            await asyncio.sleep(every)
    raise AssertionError(
        f"{key} never appeared; inbox: {[o['Key'] for o in s3().list_objects_v2(Bucket=bucket).get('Contents', [])]}"
    )


async def drop(client, key: str, body: str) -> None:
    s3().put_object(Bucket=get_settings().inbox_bucket, Key=key, Body=body.encode())
    await client.get_schedule_handle("dropbox-watch").trigger()


@pytest.fixture(scope="module")
def inbox():
    return get_settings().inbox_bucket


async def test_dropbox_create_reject_and_delete(client, stack, inbox):
    from starter.commands.dropbox import dropbox_add_user, dropbox_setup

    s = await onboard_ready(client, stack, "drop", ACCOUNT, ["us-east-1"])
    assert s.state == m.OrgState.READY, s
    assert await dropbox_setup(client) == inbox
    desc = await client.get_schedule_handle("dropbox-watch").describe()
    # S3 events start requests at once (tests/integration/test_dropbox_events.py): the Schedule is
    # the safety net.
    every = desc.schedule.spec.intervals[0].every.total_seconds()
    assert every == get_settings().dropbox_safety_net_seconds
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
    owners = {
        t["Value"]
        for r in ec2.describe_instances(
            Filters=[{"Name": "tag:bridgehead:cluster", "Values": ["c1"]}]
        )["Reservations"]
        for i in r["Instances"]
        for t in i["Tags"]
        if t["Key"] == "bridgehead:owner"
    }
    assert owners == {"alice"}

    # Bad requests: each gets a .cf-rejected with the reason, and nothing is created.
    bad = {
        "home/alice/broken.cf-create": ("{not json", "not valid JSON"),
        "home/alice/extra.cf-create": (json.dumps({**CONFIG, "gpu": True}), "gpu"),
        "home/alice/9lives.cf-create": (json.dumps(CONFIG), "must match"),
        "home/alice/c1.cf-create": (json.dumps(CONFIG), "you already have a cluster named c1"),
        "home/mallory/m1.cf-create": (json.dumps(CONFIG), "not registered"),
        "home/bob/c1.cf-delete": ("", "belongs to alice"),
        "home/alice/huge.cf-create": (
            json.dumps({**CONFIG, "compute_max_nodes": 10_000}),
            "compute_max_nodes",
        ),
    }
    before = await snapshot_async(stack, accounts=[ACCOUNT], regions=["us-east-1", "us-east-2"])
    for key, (body, _) in bad.items():
        s3().put_object(Bucket=inbox, Key=key, Body=body.encode())
    await client.get_schedule_handle("dropbox-watch").trigger()
    for key, (_, needle) in bad.items():
        reason = await wait_object(key.rsplit(".cf-", 1)[0] + ".cf-rejected")
        assert needle in reason, (key, reason)
    # Nothing created or changed anywhere but the inbox (requests in, results out).
    after = await snapshot_async(stack, accounts=[ACCOUNT], regions=["us-east-1", "us-east-2"])
    assert diff(before, after, [s for s in SECTIONS if s != "inbox"]) == []
    stacks = [x["StackName"] for x in cfn.list_stacks()["StackSummaries"]]
    assert stacks.count("bridgehead-drop--cluster-c1") == 1
    assert (await client.get_workflow_handle("cluster-drop-c1").describe()).status.name == "RUNNING"

    # Deletion by the owner: .cf-deleted appears and the stack is gone.
    await drop(client, "home/alice/c1.cf-delete", "")
    assert "deleted" in (await wait_object("home/alice/c1.cf-deleted")).lower()
    live = [
        x["StackName"]
        for x in cfn.list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"]
    ]
    assert "bridgehead-drop--cluster-c1" not in live


async def test_a_file_seen_by_two_watcher_runs_is_handled_once(
    client, stack, inbox, watcher_paused
):
    """Three watcher runs over the same listing (what a watcher restarted between reading and acting
    does): Temporal accepts one handler per file version, so exactly one run starts it and one
    cluster stack is created (counted by stack id on moto's side, not through visibility)."""
    from bridgehead import ids

    key = "home/bob/c2.cf-create"
    s3().put_object(Bucket=inbox, Key=key, Body=json.dumps(CONFIG).encode())
    version = listed(key).etag
    runs = await asyncio.gather(*(run_watcher(client, inbox) for _ in range(3)))
    assert sorted(runs) == [0, 0, 1], runs  # the scheduled watcher is paused: these three alone
    await wait_object("home/bob/c2.cf-created")
    handler = await client.get_workflow_handle(ids.dropbox_request_id(key, version)).describe()
    assert handler.status.name == "COMPLETED"
    cfn = stack.customer_admin(ACCOUNT, "cloudformation")
    ids_c2 = {
        x["StackId"]
        for x in cfn.list_stacks()["StackSummaries"]
        if x["StackName"] == "bridgehead-drop--cluster-c2"
    }
    assert len(ids_c2) == 1, ids_c2
    # Re-dropping the very same content later is a new request (a new upload), and is refused by name.
    s3().put_object(Bucket=inbox, Key=key, Body=json.dumps(CONFIG).encode())
    assert listed(key).etag != version
    assert await run_watcher(client, inbox) == 1
    assert "already have a cluster named c2" in await wait_object("home/bob/c2.cf-rejected")
    assert {
        x["StackId"]
        for x in cfn.list_stacks()["StackSummaries"]
        if x["StackName"] == "bridgehead-drop--cluster-c2"
    } == ids_c2


def test_dropbox_user_policy_confines_each_user_to_their_prefix():
    """Evaluate policies/dropbox-user.json as IAM would for user alice (variables substituted,
    wildcards matched): her prefix yes, bob's prefix and the bucket root no."""
    from fnmatch import fnmatchcase

    from bridgehead.policies import POLICY_DIR

    doc = json.loads(
        (POLICY_DIR / "dropbox-user.json")
        .read_text()
        .replace("{{PARTITION}}", "aws")
        .replace("{{INBOX_BUCKET}}", "inbox")
    )

    def allowed(user: str, action: str, resource: str, prefix: str | None = None) -> bool:
        for st in doc["Statement"]:
            actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
            res = st["Resource"].replace("${aws:username}", user)
            if st["Effect"] != "Allow" or action not in actions or not fnmatchcase(resource, res):
                continue
            cond = st.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
            if cond is None or (
                prefix is not None
                and any(fnmatchcase(prefix, c.replace("${aws:username}", user)) for c in cond)
            ):
                return True
        return False

    assert allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/home/alice/c1.cf-create")
    assert not allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/home/bob/c1.cf-create")
    assert not allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/home/alice-evil/c1.cf-create")
    assert not allowed("alice", "s3:PutObject", "arn:aws:s3:::inbox/c1.cf-create")
    assert allowed("alice", "s3:ListBucket", "arn:aws:s3:::inbox", prefix="home/alice/")
    assert not allowed("alice", "s3:ListBucket", "arn:aws:s3:::inbox", prefix="home/bob/")
    assert not allowed("alice", "s3:ListBucket", "arn:aws:s3:::inbox", prefix="")


# --- issue 19: a request is never lost, results answer the newest request, buckets from settings ---
def activities(bucket: str | None = None):  # type: ignore[no-untyped-def]
    """The worker's drop-box activities, called in-process (optionally for another inbox name)."""
    from activities.aws import Aws
    from activities.dropbox import DropboxActivities
    from activities.registry import Registry

    settings = (
        get_settings()
        if bucket is None
        else get_settings().model_copy(update={"inbox_bucket": bucket})
    )
    aws = Aws(settings)
    return DropboxActivities(aws, Registry(aws))


@pytest.fixture
async def watcher_paused(client, inbox):
    """The scheduled watcher held still and the inbox's S3 events off, so the test alone decides
    when a file is listed."""
    from activities.aws import Aws
    from activities.dropbox_events import ensure_dropbox_events
    from starter.commands.dropbox import dropbox_setup

    assert await dropbox_setup(client) == inbox
    sched = client.get_schedule_handle("dropbox-watch")
    await sched.pause(note="test in progress")
    ensure_dropbox_events(Aws(get_settings().model_copy(update={"dropbox_events_queue": ""})))
    try:
        yield
    finally:
        await sched.unpause()
        await dropbox_setup(client)  # events on again


async def run_watcher(client, inbox) -> int:
    return await client.execute_workflow(
        "DropboxWatch",
        m.DropboxWatchInput(bucket=inbox),
        id=f"dropbox-watch-test-{uuid.uuid4().hex[:6]}",
        task_queue="bridgehead",
        result_type=int,
    )


async def wait_until(fn, timeout: float = 90):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.5)


def listed(key: str) -> m.DropboxFile:
    return next(f for f in activities().scan_inbox(m.DropboxWatchInput()).files if f.key == key)


def body_or_none(inbox: str, key: str) -> str | None:
    try:
        return s3().get_object(Bucket=inbox, Key=key)["Body"].read().decode()
    except s3().exceptions.NoSuchKey:
        return None


async def test_a_new_upload_while_the_first_is_handled_is_not_lost(
    client, stack, inbox, watcher_paused
):
    """Version 1 of a request is listed; version 2 is uploaded to the same key before version 1 is
    handled. Handling version 1 (rejected: not JSON) must remove version 1 only: version 2 stays,
    the next watcher run acts on it (the cluster is created), and the only result left answers
    version 2 (version 1's rejection, written after version 2 was uploaded, is cleared too)."""
    from bridgehead import ids
    from starter.commands.dropbox import dropbox_add_user

    dropbox_add_user("carol", "drop")
    key = "home/carol/c6.cf-create"
    s3().put_object(Bucket=inbox, Key=key, Body=b"{not json")
    v1 = listed(key)
    v2_body = json.dumps(CONFIG)
    s3().put_object(Bucket=inbox, Key=key, Body=v2_body.encode())
    await asyncio.sleep(
        1.5
    )  # S3 times have one-second steps: version 1's answer is written later than version 2
    out = await client.execute_workflow(
        "DropboxRequest",
        m.DropboxRequestInput(bucket=inbox, key=key, etag=v1.etag),
        id=ids.dropbox_request_id(key, v1.etag),
        task_queue="bridgehead",
        result_type=str,
    )
    assert out.startswith("rejected: not valid JSON"), (
        out
    )  # version 1 itself was read, not version 2
    assert body_or_none(inbox, key) == v2_body, "the clean-up of version 1 removed version 2"
    assert await run_watcher(client, inbox) == 1

    def results():
        return {
            o["Key"]
            for o in s3().list_objects_v2(Bucket=inbox, Prefix="home/carol/c6.").get("Contents", [])
        }

    assert await wait_until(lambda: results() == {"home/carol/c6.cf-created"}), results()
    cfn = stack.customer_admin(ACCOUNT, "cloudformation")
    assert [
        x["StackStatus"]
        for x in cfn.list_stacks()["StackSummaries"]
        if x["StackName"] == "bridgehead-drop--cluster-c6"
    ] == ["CREATE_COMPLETE"]


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned inbox", "unversioned inbox"])
async def test_consuming_a_request_removes_only_the_version_handled(
    client, stack, inbox, watcher_paused, versioned
):
    """The clean-up after a create or delete (``delete_dropbox_request``), with the new upload
    interleaved exactly between listing and clean-up; also in an unversioned bucket (conditional on
    the ETag and upload time read)."""
    bucket = inbox if versioned else f"{inbox}-plain"
    acts = activities(bucket)
    if not versioned:
        s3().create_bucket(Bucket=bucket)
    key = "home/nobody/c7.cf-delete"
    s3().put_object(Bucket=bucket, Key=key, Body=b"first")
    v1 = next(f for f in acts.scan_inbox(m.DropboxWatchInput()).files if f.key == key)
    assert v1.etag.count("@") == (2 if versioned else 1), (
        v1.etag
    )  # <ETag>@<LastModified>[@<VersionId>]
    s3().put_object(Bucket=bucket, Key=key, Body=b"second")
    acts.delete_dropbox_request(m.DropboxRequestInput(bucket=bucket, key=key, etag=v1.etag))
    assert s3().get_object(Bucket=bucket, Key=key)["Body"].read() == b"second"
    v2 = next(f for f in acts.scan_inbox(m.DropboxWatchInput()).files if f.key == key)
    assert v2.etag != v1.etag
    acts.delete_dropbox_request(m.DropboxRequestInput(bucket=bucket, key=key, etag=v2.etag))
    assert [f for f in acts.scan_inbox(m.DropboxWatchInput()).files if f.key == key] == []


async def test_a_new_request_clears_older_results(client, stack, inbox):
    """create, re-create (rejected), delete, re-create of c9: after each step the only result file
    of c9 is the answer to the newest request (never an old one that makes it look finished)."""

    def results() -> set[str]:
        objs = s3().list_objects_v2(Bucket=inbox, Prefix="home/alice/c9.").get("Contents", [])
        return {
            o["Key"].rsplit(".", 1)[1]
            for o in objs
            if not o["Key"].endswith((".cf-create", ".cf-delete"))
        }

    async def step(name: str, body: str, expect: str) -> None:
        await drop(client, f"home/alice/c9.{name}", body)
        got = await wait_until(lambda: results() == {expect} and results())
        assert got == {expect}, (name, results())

    await step("cf-create", json.dumps(CONFIG), "cf-created")
    await step("cf-create", json.dumps(CONFIG), "cf-rejected")
    assert "already have a cluster named c9" in body_or_none(inbox, "home/alice/c9.cf-rejected")
    await step("cf-delete", "", "cf-deleted")
    await client.get_workflow_handle(
        "cluster-drop-c9"
    ).result()  # the registry says DELETED before a re-create
    await step("cf-create", json.dumps(CONFIG), "cf-created")
    await drop(client, "home/alice/c9.cf-delete", "")
    await client.get_workflow_handle("cluster-drop-c9").result()
    assert results() == {"cf-deleted"}


async def test_buckets_come_from_settings_never_from_input(client, stack, inbox, monkeypatch):
    """Every drop-box input naming a bucket other than the inbox is refused (non-retryable, the
    field named) before S3 is touched; through the worker, a watcher pointed at another bucket
    fails and reads nothing there."""
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import ApplicationError

    from activities import dropbox as dropbox_activities

    acts = activities()
    monkeypatch.setattr(
        dropbox_activities.DropboxActivities,
        "_s3",
        lambda self: pytest.fail("S3 touched before the bucket check"),
    )
    target = m.DropboxTarget(bucket="attacker-bucket", user="alice")
    calls = [
        (
            "DropboxWatchInput.bucket",
            lambda: acts.scan_inbox(m.DropboxWatchInput(bucket="attacker-bucket")),
        ),
        (
            "DropboxRequestInput.bucket",
            lambda: acts.load_dropbox_request(
                m.DropboxRequestInput(
                    bucket="attacker-bucket",
                    key="home/alice/x.cf-create",
                    etag="e@2026-11-25T00:00:00+00:00",
                )
            ),
        ),
        (
            "DropboxRequestInput.bucket",
            lambda: acts.delete_dropbox_request(
                m.DropboxRequestInput(
                    bucket="attacker-bucket", key="home/alice/x.cf-create", etag="e"
                )
            ),
        ),
        (
            "DropboxTarget.bucket",
            lambda: acts.write_dropbox_result(
                m.DropboxResultInput(
                    target=target, cluster="x", suffix="cf-created", body="1.2.3.4"
                )
            ),
        ),
    ]
    for field, call in calls:
        with pytest.raises(ApplicationError) as e:
            call()
        assert e.value.non_retryable and e.value.type == "UntrustedResourceName", e.value
        assert field in str(e.value) and "attacker-bucket" in str(e.value) and inbox in str(e.value)
    monkeypatch.undo()

    # Through the worker: another bucket holding a request file is never listed nor read.
    s3().create_bucket(Bucket="attacker-bucket")
    s3().put_object(
        Bucket="attacker-bucket", Key="home/alice/x1.cf-create", Body=json.dumps(CONFIG).encode()
    )
    with pytest.raises(WorkflowFailureError) as e:
        await client.execute_workflow(
            "DropboxWatch",
            m.DropboxWatchInput(bucket="attacker-bucket"),
            id=f"dropbox-watch-test-{uuid.uuid4().hex[:6]}",
            task_queue="bridgehead",
            result_type=int,
        )
    assert "DropboxWatchInput.bucket 'attacker-bucket' is not the drop-box inbox" in str(
        e.value.cause.cause
    ), e.value.cause
    keys = [o["Key"] for o in s3().list_objects_v2(Bucket="attacker-bucket")["Contents"]]
    assert keys == ["home/alice/x1.cf-create"]
    assert (
        body_or_none(inbox, "home/alice/x1.cf-rejected") is None
        and body_or_none(inbox, "home/alice/x1.cf-created") is None
    )
