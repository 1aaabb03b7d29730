"""The drop-box's event path on the embedded stack: ``starter dropbox setup`` makes the inbox
notify the platform queue, moto's server delivers the S3 event itself (nothing is published by the
test), the worker's consumer starts ``DropboxRequest`` within seconds with the Schedule paused, and
the Schedule is the safety net: with the events switched off (the planted defect) nothing is
picked up in the same window until the Schedule runs, under the same id. The worker brings the
Schedule's interval to the events' state at start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from activities.aws import Aws
from activities.dropbox import pending_requests
from activities.dropbox_events import ensure_dropbox_events
from bridgehead import ids
from bridgehead import models as m
from bridgehead.settings import get_settings
from tests.integration.helpers import onboard_ready
from tests.integration.test_dropbox import s3, wait_object

pytestmark = pytest.mark.integration
ACCOUNT = "303030303030"
CONFIG = {
    "head_instance_type": "t3.medium",
    "compute_instance_type": "c5.large",
    "compute_initial_nodes": 1,
    "compute_max_nodes": 2,
}
#: A request must be picked up within this long of its upload, without the Schedule.
WINDOW = 5.0


def events_off() -> None:
    """The inbox stops notifying the queue (setup's own rules removed, as with the setting empty)."""
    ensure_dropbox_events(Aws(get_settings().model_copy(update={"dropbox_events_queue": ""})))


async def interval(client) -> timedelta:  # type: ignore[no-untyped-def]
    desc = await client.get_schedule_handle(ids.DROPBOX_WATCH_SCHEDULE).describe()
    return desc.schedule.spec.intervals[0].every


@pytest.fixture
async def schedule_paused(client, stack):
    """Events on (``starter dropbox setup``) and the Schedule held still: only events start work."""
    from starter.commands.dropbox import dropbox_setup

    await dropbox_setup(client)
    sched = client.get_schedule_handle(ids.DROPBOX_WATCH_SCHEDULE)
    await sched.pause(note="test in progress")
    try:
        yield
    finally:
        await sched.unpause()
        await dropbox_setup(client)  # events on again, whatever the test did


async def drop(client, key: str, body: str) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    """Upload a request; the ``DropboxRequest`` id the watcher would give it, and when.

    The id comes from the upload as listed right after it; a request handled before it could be
    listed (its clean-up removes the version: seen on a loaded machine) is found among the
    ``DropboxRequest`` runs started since, by the key and S3 version in their input."""
    inbox = get_settings().inbox_bucket
    since = datetime.now(UTC) - timedelta(seconds=1)
    at = time.monotonic()
    put = s3().put_object(Bucket=inbox, Key=key, Body=body.encode())
    listed = pending_requests(s3(), inbox, key)
    if listed:
        return ids.dropbox_request_id(listed[0].key, listed[0].etag), at
    version = put.get("VersionId")
    query = f"WorkflowType = 'DropboxRequest' AND StartTime > '{since.isoformat()}'"
    while time.monotonic() - at < WINDOW:
        async for wf in client.list_workflows(query):
            first = (await client.get_workflow_handle(wf.id).fetch_history()).events[0]
            payloads = first.workflow_execution_started_event_attributes.input.payloads
            (inp,) = await client.data_converter.decode(payloads, [m.DropboxRequestInput])
            if inp.key == key and (not version or inp.etag.endswith(f"@{version}")):
                return wf.id, at
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key}: neither listed after its upload nor handled within {WINDOW} s")


async def started_within(client, wid: str, since: float, window: float) -> float | None:  # type: ignore[no-untyped-def]
    """Seconds from ``since`` until workflow ``wid`` exists, or None after ``window``."""
    from temporalio.service import RPCError

    while time.monotonic() - since < window:
        try:
            await client.get_workflow_handle(wid).describe()
            return time.monotonic() - since
        except RPCError:
            await asyncio.sleep(0.05)
    return None


async def queue_drained(sqs, url: str, timeout: float = 20) -> bool:  # type: ignore[no-untyped-def]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        if all(attrs[n] == "0" for n in names):
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_dropped_request_is_started_by_its_event_within_seconds(
    client, stack, schedule_paused
):
    from starter.commands.dropbox import dropbox_add_user

    s = await onboard_ready(client, stack, "dropev", ACCOUNT, ["us-east-1"])
    assert s.state == m.OrgState.READY, s
    dropbox_add_user("erin", "dropev")
    assert await interval(client) == timedelta(seconds=get_settings().dropbox_safety_net_seconds)

    wid, at = await drop(client, "home/erin/e1.cf-create", json.dumps(CONFIG))
    latencies = [await started_within(client, wid, at, WINDOW)]
    # More samples: bad requests (rejected, nothing created), picked up the same way.
    for i in range(5):
        bad_wid, bad_at = await drop(client, f"home/erin/bad{i}.cf-create", "{not json")
        latencies.append(await started_within(client, bad_wid, bad_at, WINDOW))
    assert None not in latencies, f"not started within {WINDOW} s of the upload: {latencies}"
    shown = ", ".join(f"{x:.2f}" for x in latencies if x is not None)
    print(f"\ndrop-box event pickup, upload to DropboxRequest seen started (s): {shown}")
    assert (await wait_object("home/erin/e1.cf-created", every=0.2)).strip()
    assert (await client.get_workflow_handle(wid).result()) == "cluster started"
    assert "not valid JSON" in await wait_object("home/erin/bad4.cf-rejected", every=0.2)

    # A duplicate of the event after the request was handled starts nothing more.
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=get_settings().dropbox_events_queue)["QueueUrl"]
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": get_settings().inbox_bucket},
            "object": {"key": "home/erin/e1.cf-create", "eTag": "x"},
        },
    }
    since = datetime.now(UTC).isoformat()
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [record]}))
    assert await queue_drained(sqs, url)
    later = f"WorkflowType = 'DropboxRequest' AND StartTime > '{since}'"
    assert (await client.count_workflows(later)).count == 0
    assert (await client.count_workflows(f"WorkflowId = '{wid}'")).count == 1

    # Deleting through the drop-box, also by its event: the cluster is gone again.
    wid_del, at = await drop(client, "home/erin/e1.cf-delete", "")
    assert await started_within(client, wid_del, at, WINDOW) is not None
    assert (
        "deleted" in (await wait_object("home/erin/e1.cf-deleted", timeout=120, every=0.2)).lower()
    )


async def test_twin_without_events_the_request_waits_for_the_schedule(
    client, stack, schedule_paused
):
    """Planted defect: the inbox's notifications switched off. Within the same window nothing
    starts; the Schedule (the safety net) then starts it, under the same id."""
    events_off()
    wid, at = await drop(client, "home/nobody/e2.cf-create", json.dumps(CONFIG))
    assert await started_within(client, wid, at, WINDOW) is None
    await client.get_schedule_handle(ids.DROPBOX_WATCH_SCHEDULE).trigger()
    assert await started_within(client, wid, time.monotonic(), 30) is not None
    assert "not registered" in await wait_object("home/nobody/e2.cf-rejected", every=0.2)


async def test_worker_start_brings_the_schedule_to_the_events_state(client, stack):
    from starter.commands.dropbox import dropbox_setup
    from worker import sync_dropbox

    settings = get_settings()
    aws = Aws(settings)
    try:
        await dropbox_setup(client)
        assert await interval(client) == timedelta(seconds=settings.dropbox_safety_net_seconds)
        events_off()  # e.g. the notification removed by hand: the Schedule must poll again
        await sync_dropbox(client, settings, aws)
        assert await interval(client) == timedelta(seconds=settings.dropbox_every_seconds)
        await dropbox_setup(client)
        slower = settings.model_copy(update={"dropbox_safety_net_seconds": 1200})
        await sync_dropbox(client, slower, aws)
        assert await interval(client) == timedelta(seconds=1200)
    finally:
        await dropbox_setup(client)


def test_setup_through_the_cli_says_how_requests_are_found(stack):
    env = {**os.environ, **stack.env()}
    cmd = [sys.executable, "-m", "starter", "dropbox", "setup"]
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    settings = get_settings()
    # The starter leaves structlog unconfigured: its log lines (e.g. "schedule created") go to
    # stdout before the document.
    doc = r.stdout[r.stdout.index("\n{") + 1 :] if not r.stdout.startswith("{") else r.stdout
    assert json.loads(doc) == {
        "bucket": settings.inbox_bucket,
        "schedule": "dropbox-watch",
        "every_seconds": settings.dropbox_safety_net_seconds,
        "queue": settings.dropbox_events_queue,
    }
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert f"S3 events to queue {settings.dropbox_events_queue}" in r.stdout, r.stdout + r.stderr
