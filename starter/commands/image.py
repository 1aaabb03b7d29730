"""``image release``: share a new platform image release with every READY organisation
(``ImageRelease``), and revoke the release it replaces after the grace period."""

from __future__ import annotations

import argparse
from typing import Any

from bridgehead import models as m
from starter.args import group, leaf
from starter.client import client
from starter.output import CliError, emit


def parse_images(pairs: list[str]) -> dict[str, str]:
    """``REGION=AMI`` flags -> ``{region: ami}``; a region given twice is an error."""
    images: dict[str, str] = {}
    for pair in pairs:
        region, sep, image = pair.partition("=")
        if not sep or not region or not image:
            raise CliError(
                f"--image {pair!r}: expected REGION=AMI, e.g. us-east-1=ami-0123456789abcdef0"
            )
        if region in images:
            raise CliError(f"--image: {region} given twice")
        images[region] = image
    return images


async def cmd_image_release(args: argparse.Namespace) -> int:
    """Start ``ImageRelease`` (id ``image-release-{version}``); a version already running or
    released is refused by its id, not released twice."""
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from bridgehead import ids
    from bridgehead.settings import get_settings

    inp = m.ImageReleaseInput(
        version=args.version,
        images=parse_images(args.image),
        concurrency=args.concurrency,
        grace_period_hours=args.grace_hours,
    )
    wf_id = ids.image_release_workflow_id(inp.version)
    try:
        h = await (await client()).start_workflow(
            "ImageRelease",
            inp,
            id=wf_id,
            task_queue=get_settings().task_queue,
            # A failed release may be started again (every step is idempotent); a finished one
            # has nothing left to do.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=f"image release {inp.version}",
            result_type=m.ImageReleaseStatus,
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"{wf_id} exists: release {inp.version} is running or done (`starter status {wf_id}`)"
        ) from None
    if not args.wait:
        emit(args, {"started": h.id}, f"started {h.id}; follow it with `starter status {h.id}`")
        return 0
    result: m.ImageReleaseStatus = await h.result()
    emit(args, result, f"{h.id}: {result.phase.value} {result.totals} {result.problems or ''}")
    return 0


def register(sub: Any) -> None:
    img = group(sub, "image", "platform image releases")
    x = leaf(
        img,
        "release",
        "share a new image release with every READY organisation and revoke the one it replaces (ImageRelease)",
        cmd_image_release,
    )
    x.add_argument("version", help="the release's version (its workflow id: image-release-VERSION)")
    x.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="REGION=AMI",
        help="the released image in a region (repeat; other regions get a copy of the source region's)",
    )
    x.add_argument("--concurrency", type=int, help="steps at once (default: the setting, 4)")
    x.add_argument(
        "--grace-hours",
        type=float,
        help="hours before the replaced release is revoked (default: the setting, 72)",
    )
    x.add_argument("--wait", action="store_true", help="wait for the release to finish")
