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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridgehead import ids
from bridgehead import models as m
from starter.local import PLATFORM_ACCOUNT
from tests.integration.helpers import (
    accept_moto_widening,
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
    await accept_moto_widening(h, stack)  # READY at warn: the widening moto needs
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


BILL_ACCOUNT = "310000000008"
BILL_T0 = datetime(2026, 11, 4, 9, 0, tzinfo=UTC)


def _billing_org(stack, monkeypatch, org: str):  # noqa: ANN001, ANN202
    """An organisation with a cluster that ran two whole hours (head t3.medium, two c5.xlarge),
    linked to a Marketplace buyer, its platform calls going through the test proxy; Marketplace
    is the fake (moto cannot meter by account id), which loses answers after the fact on request."""
    from activities.billing import BillingActivities
    from bridgehead.settings import get_settings
    from tests.integration.helpers import billed_cluster, ledger_org
    from tests.support.fake_marketplace import FakeMarketplace, install, link_org

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.aws_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.platform_keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.platform_keys["aws_secret_access_key"])
    get_settings.cache_clear()
    aws, reg = ledger_org(org, BILL_ACCOUNT)
    link_org(reg, org, BILL_ACCOUNT)
    billed_cluster(reg, org, BILL_T0, BILL_T0 + timedelta(hours=2), state="DELETED")
    now = [BILL_T0 + timedelta(hours=2, minutes=5)]
    market = FakeMarketplace(subscribed={BILL_ACCOUNT}, clock=lambda: now[0])
    install(aws, market)
    return BillingActivities(aws, reg, clock=lambda: now[0]), market, aws, now


def _as_temporal_retries(fn, now: list[datetime]):  # noqa: ANN001, ANN202
    """Run an activity the way Temporal would after failures: again, an hour later (a long
    outage: a resend then falls in another clock hour, where Marketplace would take a record
    stamped anew as a new one), up to five attempts. Returns the result and the failures seen."""
    from temporalio.testing import ActivityEnvironment

    errors = []
    for _ in range(5):
        try:
            return ActivityEnvironment().run(fn), errors
        except Exception as e:  # noqa: BLE001 - the lost answer, as the activity sees it
            errors.append(getattr(e, "type", None) or type(e).__name__)
            now[0] += timedelta(hours=1)
    raise AssertionError(f"still failing after five attempts: {errors}")


def _ledger_on_moto(stack, org: str) -> dict[str, object]:  # noqa: ANN001
    """The ledger as the emulator holds it (the snapshot helper's full scan, straight from moto,
    not through the proxy): the organisation's period entries and its totals' counters."""
    from bridgehead.settings import get_settings
    from tests.support.snapshot import _Accounts, _scan

    items = _scan(_Accounts(stack), get_settings().ledger_table)
    mine = {k.split("/", 1)[1]: v for k, v in items.items() if k.startswith(f"ORG#{org}/")}
    totals = mine.get("TOTALS", {})
    return {
        "period_entries": sorted(k for k in mine if k.startswith("PERIOD#")),
        "totals_entries": int(totals.get("entries", 0)),
        "totals_node_minutes": int(totals.get("node_minutes", 0)),
    }


def _billing_with_lost_answers(stack, monkeypatch, org: str, plant=None) -> dict[str, object]:  # noqa: ANN001
    """Close the two hours and meter them with answers lost after the fact, then read what the
    emulator and the Marketplace fake hold. ``plant(now)`` plants a defect (the twin).

    * The first ledger write's answer is lost: botocore's in-call retry meets the conditional put
      (``attribute_not_exists``) and the entry is found written.
    * Every botocore attempt of the ``billed_through`` update after the entries fails (503, before
      the fact): the activity fails after its ledger writes took effect, as a worker dying there
      would, and Temporal runs it again (here: the driver), which must find them instead of
      writing them again.
    * The first two BatchMeterUsage calls are honored and their answers lost (a 500, then a
      dropped connection): the resend must be the very same records.
    """
    acts, market, aws, now = _billing_org(stack, monkeypatch, org)
    if plant:
        plant(now)
    proxy = stack.proxy
    attempts = aws.platform("dynamodb").meta.config.retries["total_max_attempts"]
    faults0 = Counter(proxy.after_faults)
    forced = {"TransactWriteItems": 1}
    proxy.fail_next_after.update(forced)
    proxy.fail_next_before["UpdateItem"] = attempts
    market.lose_answers = 2
    try:
        _, close_errors = _as_temporal_retries(
            lambda: acts.close_billing_periods(
                m.CloseBillingPeriodsInput(org_id=org, until=BILL_T0 + timedelta(hours=2))
            ),
            now,
        )
        _, meter_errors = _as_temporal_retries(
            lambda: acts.meter_usage(m.MeterUsageInput(org_id=org)), now
        )
    finally:
        leftover = {a: proxy.fail_next_after.pop(a, 0) for a in forced}
        leftover["UpdateItem"] = proxy.fail_next_before.pop("UpdateItem", 0)
    lost = Counter()
    for (_, action), n in (Counter(proxy.after_faults) - faults0).items():
        lost[action] += n
    assert leftover == {"TransactWriteItems": 0, "UpdateItem": 0}, leftover
    assert dict(lost) == forced, lost
    assert close_errors == ["AwsTransient"], close_errors  # the failed billed_through update
    assert meter_errors == ["AwsTransient", "AwsUnreachable"], meter_errors
    assert market.lost == ["500", "drop"]
    return {
        **_ledger_on_moto(stack, org),
        "marketplace_records": sorted(
            (r["Dimension"], r["Quantity"], r["Timestamp"].isoformat()) for r in market.accepted
        ),
        "marketplace_calls": len(market.calls),
    }


def _intended_billing() -> dict[str, object]:
    hours = [BILL_T0, BILL_T0 + timedelta(hours=1)]
    return {
        "period_entries": [f"PERIOD#{h.isoformat()}#c1" for h in hours],
        "totals_entries": 2,
        "totals_node_minutes": 2 * 60 * 3,  # two hours, three nodes
    }


def test_lost_answers_on_ledger_writes_and_meter_usage_count_exactly(enforcing_stack, monkeypatch):
    got = _billing_with_lost_answers(enforcing_stack, monkeypatch, "fbill1")
    stamp = got["marketplace_records"][0][2]  # the batch's own time, the same on every resend
    assert {k: v for k, v in got.items() if not k.startswith("marketplace")} == _intended_billing()
    assert got["marketplace_records"] == [
        ("node-minutes.c5.xlarge", 240, stamp),
        ("node-minutes.t3.medium", 120, stamp),
    ]
    assert got["marketplace_calls"] == 3  # two lost answers, one acknowledged resend


def test_twin_a_non_idempotent_ledger_write_and_send_make_the_counts_exceed(
    enforcing_stack, monkeypatch
):
    """Planted defects: each ledger write keys its entry by the call (as an entry keyed by the
    attempt's clock would be), so the conditional put cannot stop the retried activity; and records
    are stamped at send time instead of with their batch's time, so a resend is a new record to
    Marketplace. Both counts exceed what was intended."""
    import itertools

    import activities.metering as metering
    from activities.registry import Registry

    call = itertools.count()
    real_put = Registry.put_new_and_add

    def keyed_by_call(self, item, totals_key, add, *, table, also=()):  # noqa: ANN001, ANN202
        keyed = {**item, "sk": f"{item['sk']}#{next(call)}"}
        # The ledger's index entry names the entry it indexes: keyed the same way.
        also = [
            {**x, "sk": f"UNMETERED#{keyed['sk']}", "entry": keyed["sk"]} if "entry" in x else x
            for x in also
        ]
        return real_put(self, keyed, totals_key, add, table=table, also=also)

    monkeypatch.setattr(Registry, "put_new_and_add", keyed_by_call)

    def stamp_at_send(now: list[datetime]) -> None:
        monkeypatch.setattr(metering, "_batch_time", lambda b: now[0].replace(microsecond=0))

    got = _billing_with_lost_answers(enforcing_stack, monkeypatch, "fbill2", plant=stamp_at_send)
    hours = [BILL_T0, BILL_T0 + timedelta(hours=1)]
    assert got["period_entries"] == sorted(
        f"PERIOD#{h.isoformat()}#c1#{n}" for n, h in zip(range(4), hours * 2, strict=True)
    ), got  # each hour written again by the retried activity
    assert got["totals_entries"] == 4 and got["totals_node_minutes"] == 2 * 360, got
    assert len(got["marketplace_records"]) == 6, got  # each dimension at three send times
