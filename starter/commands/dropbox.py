"""``dropbox``: the S3 inbox for users without AWS rights (bucket, its S3 events to the platform
queue, the watching Schedule; users mapped to organisations)."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from bridgehead import ids
from bridgehead import models as m
from starter.args import group, leaf
from starter.client import client
from starter.output import BAD_INPUT, CliError, emit


async def dropbox_setup(c: Any) -> str:
    """Create the inbox bucket (platform account), its event notifications and the Schedule that
    watches it; returns the bucket. Idempotent (see :func:`dropbox_setup_events`)."""
    return (await dropbox_setup_events(c))[0]


async def dropbox_setup_events(c: Any) -> tuple[str, bool]:
    """:func:`dropbox_setup`, also saying whether the inbox's S3 events now start requests: with
    ``BRIDGEHEAD_DROPBOX_EVENTS_QUEUE`` set, uploads notify that queue (created, with a policy that
    lets only the inbox send) and the Schedule becomes the slow safety net; with it empty the
    Schedule polls every ``dropbox_every_seconds``."""
    from activities.aws import Aws
    from activities.dropbox_events import ensure_dropbox_events
    from activities.schedules import dropbox_schedule, ensure_schedule
    from bridgehead.settings import get_settings

    settings = get_settings()
    aws = Aws(settings)
    s3 = aws.platform("s3", settings.platform_region)
    try:
        kwargs: dict[str, Any] = {"Bucket": settings.inbox_bucket}
        if settings.platform_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.platform_region}
        s3.create_bucket(**kwargs)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    private = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    s3.put_public_access_block(Bucket=settings.inbox_bucket, PublicAccessBlockConfiguration=private)
    # Versioned, so a request is read and removed by the version that was listed: a new upload to the
    # same key while the first is handled is never lost. Old versions expire after a day.
    s3.put_bucket_versioning(
        Bucket=settings.inbox_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    expire = {
        "ID": "expire-handled-versions",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket=settings.inbox_bucket, LifecycleConfiguration={"Rules": [expire]}
    )
    events = ensure_dropbox_events(aws)
    await ensure_schedule(c, ids.DROPBOX_WATCH_SCHEDULE, dropbox_schedule(settings, events))
    return settings.inbox_bucket, events


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
    from activities.schedules import dropbox_watch_every
    from bridgehead.settings import get_settings

    bucket, events = await dropbox_setup_events(await client())
    settings = get_settings()
    every = int(dropbox_watch_every(settings, events).total_seconds())
    queue = settings.dropbox_events_queue if events else None
    where = f"s3://{bucket}/home/<user>/<CLUSTER>.cf-create"
    how = f"S3 events to queue {queue}, schedule dropbox-watch every {every} s as safety net"
    ready = (
        f"drop-box ready: {where} ({how if events else f'schedule dropbox-watch every {every} s'})"
    )
    out = {"bucket": bucket, "schedule": "dropbox-watch", "every_seconds": every, "queue": queue}
    emit(args, out, ready)
    return 0


async def cmd_dropbox_add_user(args: argparse.Namespace) -> int:
    try:
        dropbox_add_user(args.user, args.org, args.owner)
    except ValidationError as e:
        raise CliError(f"invalid user name: {e.errors()[0]['msg']}", BAD_INPUT) from None
    may = f"{args.user} may now use s3://.../home/{args.user}/ for {args.org}"
    emit(args, {"user": args.user, "org_id": args.org}, may)
    return 0


def register(sub: Any) -> None:
    ds = group(sub, "dropbox", "the S3 drop-box for users without AWS rights")
    leaf(
        ds,
        "setup",
        "create the inbox bucket, its event queue and the watching schedule",
        cmd_dropbox_setup,
    )
    x = leaf(ds, "add-user", "map a user to an organisation", cmd_dropbox_add_user)
    x.add_argument("--user", required=True, help="IAM user name (${aws:username})")
    x.add_argument("--org", required=True, help="organisation id")
    x.add_argument("--owner", help="owner tag for the user's clusters (default: the user)")
