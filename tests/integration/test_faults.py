"""Faults after the fact: AWS carried out a mutating call, then the answer was lost (a 500, a
throttling error, or the connection dropped). This is what idempotency exists for, so the suite
counts, on the emulator's side and by identity (stack ids, instance ids, AMI ids, grants), what the
whole lifecycle created, and each count must equal the number intended.

Twin: with the idempotency removed from one call (CopyImage without its ClientToken or its lookup
of an earlier copy), one lost response makes a second image, and the same count reports it.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from bridgehead import ids
from bridgehead import models as m
from starter.local import PLATFORM_ACCOUNT
from tests.integration.helpers import (
    create_role_directly,
    delete_cluster,
    start_cluster,
    start_org,
    submit_role_and_settle,
)
from tests.support.snapshot import creations, snapshot, snapshot_async

pytestmark = pytest.mark.integration
ACCOUNT = "310000000007"
REGION = "us-west-1"  # no released image there: ShareImages copies one (a CopyImage to count)
CFG = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_type="c5.large",
    compute_initial_nodes=2,
    compute_max_nodes=3,
)
#: Recorded in the artifact; override to explore other interleavings.
SEED = int(os.environ.get("BRIDGEHEAD_FAULT_SEED", "19"))
RATE = 0.3
#: Calls whose next answers are always lost, whatever the seed: three in a row exhaust botocore's
#: attempts within one call (total_max_attempts of activities/aws.py's config), so the activity
#: itself fails and Temporal retries it: the case a deterministic token or a lookup must cover.
FORCED = {
    "CreateStack": 3,
    "CopyImage": 3,
    "ModifyImageAttribute": 3,
    "ModifySnapshotAttribute": 3,
    "PutItem": 3,
}
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults-after-the-fact.json"


def copied_image_name() -> str:
    return "bridgehead-node-2026.11-from-us-east-1"  # seed_emulator's image, named by copy_platform_image


def intended(after: dict, made: dict) -> dict[str, int]:
    """What the lifecycle is meant to create: the foundation and cluster stacks once, the head
    node and the initial compute nodes, one copy of the image, one grant of it and its snapshots."""
    image_key = next(
        k
        for k, v in after["image_grants"].items()
        if k.startswith(f"{PLATFORM_ACCOUNT}/{REGION}/") and v["name"] == copied_image_name()
    )
    image_id = image_key.rsplit("/", 1)[1]
    want = {
        f"stack {ACCOUNT}/{REGION}/{ids.foundation_stack('enf6', REGION)}": 1,
        f"stack {ACCOUNT}/{REGION}/{ids.cluster_stack('enf6', 'k1')}": 1,
        f"instances {ACCOUNT}/{REGION}": 1 + CFG.compute_initial_nodes,
        f"image {PLATFORM_ACCOUNT}/{REGION}/{copied_image_name()}": 1,
        f"launch grant {image_id}->{ACCOUNT}": 1,
    }
    # The copy's snapshots are granted once each (which snapshots back it is moto's business).
    want.update(
        {k: 1 for k in made if k.startswith("volume grant ") and k.endswith(f"->{ACCOUNT}")}
    )
    return want


async def test_lost_responses_on_mutating_calls_create_nothing_twice(
    enforcing_client, enforcing_stack
):
    client, stack = enforcing_client, enforcing_stack
    proxy = stack.proxy
    h = await start_org(client, "enf6", ACCOUNT, [REGION])
    s = await h.query("status", result_type=m.OrgStatus)
    arn = create_role_directly(stack, ACCOUNT, s)
    before = await snapshot_async(stack, accounts=[ACCOUNT], regions=[REGION])
    mutations0, faults0 = Counter(proxy.mutations), Counter(proxy.after_faults)
    proxy._rng = random.Random(SEED)
    proxy.fail_next_after.update(FORCED)
    proxy.after_rate = RATE
    try:
        s = await submit_role_and_settle(h, arn, 300)
        assert s.state == m.OrgState.READY, s
        ch, cs = await start_cluster(
            client,
            m.ClusterLifecycleInput(org_id="enf6", name="k1", region=REGION, config=CFG),
            300,
        )
        assert cs.state == m.ClusterState.RUNNING, cs
        assert (await delete_cluster(ch)).state == m.ClusterState.DELETED
    finally:
        proxy.after_rate = 0.0
        leftover = {k: v for k, v in proxy.fail_next_after.items() if v}
        proxy.fail_next_after.clear()
    after = await snapshot_async(stack, accounts=[ACCOUNT], regions=[REGION])
    made = creations(before, after)
    faults = Counter(proxy.after_faults) - faults0
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(
        json.dumps(
            {
                "seed": SEED,
                "rate": RATE,
                "forced": FORCED,
                "mutating_calls": sum((Counter(proxy.mutations) - mutations0).values()),
                "faults_after_the_fact": {
                    f"{kind} {action}": n for (kind, action), n in sorted(faults.items())
                },
                "created": made,
            },
            indent=2,
        )
    )
    assert leftover == {}, f"forced faults never used (the call never happened): {leftover}"
    assert {a for _, a in faults} >= set(FORCED), faults
    assert made == intended(after, made)


def test_twin_without_idempotency_a_lost_copy_response_makes_a_second_image(
    enforcing_stack, monkeypatch
):
    """CopyImage's idempotency removed (no deterministic ClientToken, no lookup of an earlier copy):
    the first answer is lost after the copy was made, the activity is retried, and the count reports
    two images where one was intended. With the idempotency in place the same fault makes one."""
    from activities.aws import Aws
    from activities.images import ImageActivities
    from activities.registry import Registry
    from bridgehead.settings import Settings

    stack, proxy = enforcing_stack, enforcing_stack.proxy
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.aws_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.platform_keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.platform_keys["aws_secret_access_key"])
    source = stack.platform("ec2").describe_images(
        Owners=["self"], Filters=[{"Name": "tag:bridgehead:release", "Values": ["current"]}]
    )["Images"][0]

    def copy_with_lost_answer(region: str, idempotent: bool) -> dict[str, int]:
        aws = Aws(Settings())
        acts = ImageActivities(aws, Registry(aws))
        if not idempotent:
            real = acts._ec2

            class NoIdempotency:
                def __init__(self, c):  # type: ignore[no-untyped-def]
                    self.c = c

                def __getattr__(self, name):  # type: ignore[no-untyped-def]
                    return getattr(self.c, name)

                def describe_images(self, **kw):  # type: ignore[no-untyped-def]
                    return {"Images": []} if "Filters" in kw else self.c.describe_images(**kw)

                def copy_image(self, **kw):  # type: ignore[no-untyped-def]
                    kw.pop("ClientToken", None)
                    return self.c.copy_image(**kw)

            acts._ec2 = lambda r: NoIdempotency(real(r))  # type: ignore[method-assign]
        before = snapshot(stack, regions=[region])
        # Every one of botocore's attempts loses its answer (its retries reuse the ClientToken it
        # generated, which EC2 and the proxy honour), so the activity fails and is retried: a new call.
        attempts = aws.platform("ec2", region).meta.config.retries["total_max_attempts"]
        proxy.fail_next_after["CopyImage"] = attempts
        req = m.CopyImageInput(
            source_region="us-east-1",
            source_image_id=source["ImageId"],
            region=region,
            client_token=f"twin-{region}",
        )
        errors = []
        for _ in range(3):  # Temporal's retries of the activity: each a new call
            try:
                acts.copy_platform_image(req)
                break
            except Exception as e:  # noqa: BLE001 - the lost answer, as the activity sees it
                errors.append(type(e).__name__)
        assert proxy.fail_next_after["CopyImage"] == 0 and len(errors) == 1, errors
        return creations(before, snapshot(stack, regions=[region]))

    name = f"{source['Name']}-from-us-east-1"
    assert copy_with_lost_answer("eu-west-3", idempotent=True) == {
        f"image {PLATFORM_ACCOUNT}/eu-west-3/{name}": 1
    }
    assert copy_with_lost_answer("eu-north-1", idempotent=False) == {
        f"image {PLATFORM_ACCOUNT}/eu-north-1/{name}": 2
    }
