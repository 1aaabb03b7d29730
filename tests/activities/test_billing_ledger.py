"""Ledger and Marketplace metering activities against moto (in process): exact node-minutes,
exactly-once under repeated runs (as after a crash between writing and acknowledging). The meter
workflow around them: tests/integration/test_billing.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.billing import BillingActivities, ledger_entries
from bridgehead import models as m
from tests.integration.helpers import billed_cluster, ledger_org
from tests.support.fake_marketplace import FakeMarketplace, install, link_org

ACTIVITIES = ("close_billing_periods", "meter_usage")


def test_ledger_exactly_once_and_metering_once(in_process_aws):
    org = "billco"
    aws, reg = ledger_org(org, "212121212121")
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    failed = {
        "pk": f"ORG#{org}",
        "sk": "CLUSTER#broken",
        "name": "broken",
        "region": "us-east-1",
        "state": "FAILED",
        "segments": [],
    }
    billed_cluster(reg, org, start, start + timedelta(hours=3, minutes=17), nodes=4)
    reg.put(failed)
    acts = BillingActivities(aws, reg)
    env = ActivityEnvironment()
    until = start + timedelta(hours=6)
    first = env.run(acts.close_billing_periods, m.CloseBillingPeriodsInput(org_id=org, until=until))
    assert first.entries_written == 4 and first.node_minutes == 197 * 5
    # A retried or replayed tick writes nothing twice, even with billed_through reset (crash before it was saved).
    reg.update(f"ORG#{org}", "CLUSTER#c1", {"billed_through": None})
    again = env.run(acts.close_billing_periods, m.CloseBillingPeriodsInput(org_id=org, until=until))
    assert again.entries_written == 0 and again.entries_existing == 4
    entries = ledger_entries(reg, org, "2026-11")
    assert sum(int(e["node_minutes"]) for e in entries) == 985
    assert {e["cluster"] for e in entries} == {"c1"}  # the failed creation costs nothing
    # No Marketplace link: nothing is sent (never a made-up customer), usage stays in the ledger.
    market = FakeMarketplace(subscribed={"212121212121"})
    install(aws, market)
    unlinked = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert unlinked.skipped and "no AWS Marketplace link" in unlinked.skipped and unlinked.sent == 0
    assert market.calls == [] and not any(e["metered"] for e in ledger_entries(reg, org))
    link_org(reg, org, "212121212121")
    sent = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert sent.sent == 2 and sent.unprocessed == 0  # one record per instance type (dimension)
    resent = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert resent.sent == 0 and resent.already_sent == 0 and len(market.calls) == 1
    assert all(e["metered"] for e in ledger_entries(reg, org))
    assert sorted((r["Dimension"], r["Quantity"]) for r in market.accepted) == [
        ("node-minutes.c5.xlarge", 788),
        ("node-minutes.t3.medium", 197),
    ]
    # The buyer is named by its AWS account, never by the deprecated CustomerIdentifier.
    assert all(
        r["CustomerAWSAccountId"] == "212121212121" and "CustomerIdentifier" not in r
        for r in market.sent_records()
    )


def test_metering_resends_only_what_was_not_taken_and_carries_it_past_the_six_hour_window(
    in_process_aws,
):
    """Marketplace throttles one dimension for hours, then the meter itself is down for seven:
    every node-minute of the ledger still reaches Marketplace exactly once, never with a timestamp
    Marketplace would refuse, and a stuck batch never holds up newer usage or a same-hour close."""
    org = "carryco"
    aws, reg = ledger_org(org, "212121212121")
    link_org(reg, org, "212121212121")
    now = [datetime(2026, 11, 3, 10, 10, tzinfo=UTC)]
    acts = BillingActivities(aws, reg, clock=lambda: now[0])
    market = FakeMarketplace(
        subscribed={"212121212121"}, clock=lambda: now[0], unprocessed={"node-minutes.c5.xlarge"}
    )
    install(aws, market)
    env = ActivityEnvironment()

    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": "CLUSTER#c1",
            "name": "c1",
            "region": "us-east-1",
            "state": "RUNNING",
            "segments": [],
        }
    )

    def run(
        cluster_end: datetime, at: datetime, until: datetime | None = None
    ) -> m.MeterUsageResult:
        """The cluster has run from 09:00 to ``cluster_end``: close the ledger, then meter at ``at``."""
        seg = m.UsageSegment(
            start=datetime(2026, 11, 3, 9, 0, tzinfo=UTC),
            end=cluster_end,
            head_instance_type="t3.medium",
            compute_instance_type="c5.xlarge",
            compute_nodes=2,
        )
        reg.update(f"ORG#{org}", "CLUSTER#c1", {"segments": [seg.model_dump(mode="json")]})
        if until is not None:  # a final close happens only when offboarding
            reg.update(f"ORG#{org}", "META", {"state": "OFFBOARDING"})
        env.run(
            acts.close_billing_periods,
            m.CloseBillingPeriodsInput(
                org_id=org, until=until or cluster_end, final=until is not None
            ),
        )
        return meter(at)

    def meter(at: datetime) -> m.MeterUsageResult:
        now[0] = at
        return env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))

    t = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
    first = run(t.replace(hour=10), t.replace(hour=10, minute=10))
    assert (first.sent, first.transient, first.unprocessed) == (1, 1, 1), (
        first
    )  # head accepted, compute throttled
    # An hour on: the stuck batch resends only its compute record; the new hour gets a batch of its own.
    second = run(t.replace(hour=11), t.replace(hour=11, minute=10))
    assert (second.sent, second.transient) == (1, 2), second
    assert [(r["Dimension"], r["Timestamp"]) for r in market.calls[-2]] == [
        ("node-minutes.c5.xlarge", t.replace(hour=10, minute=10))
    ]
    # Five hours on: the first batch is sent a last time and its rest carried into a new batch.
    third = meter(t.replace(hour=15, minute=20))
    assert third.expired == 1 and third.sent == 0, third
    # Marketplace recovers, but the meter was down for seven hours: batches too old to send are
    # carried (never sent stale), and the carries go out once, in the current hour.
    market.unprocessed.clear()
    fourth = meter(t.replace(hour=22, minute=30))
    assert fourth.expired == 2 and fourth.sent == 1 and fourth.unprocessed == 0, fourth
    assert [(r["Dimension"], r["Timestamp"]) for r in market.calls[-1]] == [
        ("node-minutes.c5.xlarge", t.replace(hour=22, minute=30))
    ]
    # The cluster is deleted at 22:40; the close in the same hour is not lost: this hour already
    # has its batch (one record per customer, dimension and hour), so it goes out at 23:10.
    last = run(
        t.replace(hour=22, minute=40), t.replace(hour=22, minute=45), until=t.replace(hour=23)
    )
    # Deferred: everything after the first two hours (2460 owed - 2 x 180 metered at 10:10, 11:10).
    assert last.sent == 0 and last.deferred == 2100, last
    last = meter(t.replace(hour=23, minute=10))
    assert last.sent == 2, last
    ledger = ledger_entries(reg, org)
    owed: dict[str, int] = {}
    for e in ledger:
        for itype, minutes in e["lines"].items():
            owed[f"node-minutes.{itype}"] = owed.get(f"node-minutes.{itype}", 0) + int(minutes)
    assert owed == {"node-minutes.t3.medium": 820, "node-minutes.c5.xlarge": 1640}
    assert market.totals() == owed, (
        "every node-minute of the ledger reached Marketplace, exactly once"
    )
    assert all(e["metered"] for e in ledger)
    again = meter(t.replace(hour=23, minute=20))
    assert (again.sent, again.already_sent, again.unprocessed) == (0, 0, 0)
    statuses = sorted(b["status"] for b in reg.query(f"ORG#{org}", "METER#", table=reg.ledger))
    assert statuses == ["EXPIRED"] * 3 + ["SENT"] * 2, statuses


def test_one_metering_attempt_per_organisation_at_a_time(in_process_aws):
    """An attempt that outlived its timeout holds the lease: its retry waits (a retryable error)
    instead of batching the same entries; an expired lease is taken over."""
    from temporalio.exceptions import ApplicationError

    org = "leaseco"
    aws, reg = ledger_org(org, "212121212121")
    link_org(reg, org, "212121212121")
    acts = BillingActivities(aws, reg)
    future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": "METER-LEASE",
            "lease_holder": "billing-leaseco/7/1",
            "lease_expires": future,
        },
        table=reg.ledger,
    )
    with pytest.raises(ApplicationError) as busy:
        ActivityEnvironment().run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert (
        busy.value.type == "MeteringBusy"
        and not busy.value.non_retryable
        and "billing-leaseco/7/1" in str(busy.value)
    )
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": "METER-LEASE",
            "lease_holder": "billing-leaseco/7/1",
            "lease_expires": past,
        },
        table=reg.ledger,
    )
    done = ActivityEnvironment().run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert (done.sent, done.unprocessed) == (0, 0)
    lease = reg.get(f"ORG#{org}", "METER-LEASE", table=reg.ledger)
    assert (
        lease["lease_holder"] != "billing-leaseco/7/1"
        and lease["lease_expires"] < datetime.now(UTC).isoformat()
    ), "released"


def _final_close_of(org: str, state: str) -> str | None:
    """The refusal of a final close for an org in ``state`` (None when it closed)."""
    from temporalio.exceptions import ApplicationError

    aws, reg = ledger_org(org, "212121219999")
    reg.update(f"ORG#{org}", "META", {"state": state})
    acts = BillingActivities(aws, reg)
    until = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    try:
        ActivityEnvironment().run(
            acts.close_billing_periods,
            m.CloseBillingPeriodsInput(org_id=org, until=until, final=True),
        )
    except ApplicationError as e:
        return f"{e.type}: {e.message}"
    return None


def test_only_offboarding_ends_the_meter(in_process_aws):
    """The ``stop`` signal is not authenticated: a forged one on a READY org's meter must not end
    billing for good. The final close is refused unless the registry says the org is
    offboarding (the meter then ticks on: tests/workflows/test_billing_timeskip.py)."""
    refused = _final_close_of("stopready", "READY")
    assert refused is not None and refused.startswith("BillingStopRefused") and "READY" in refused
    assert _final_close_of("stopoff", "OFFBOARDING") is None


def test_twin_a_final_close_without_the_state_check_ends_a_ready_orgs_meter(
    in_process_aws, monkeypatch
):
    from activities.registry import Registry

    real = Registry.org_item
    monkeypatch.setattr(
        Registry, "org_item", lambda self, o: {**(real(self, o) or {}), "state": "OFFBOARDING"}
    )
    assert _final_close_of("stoptwin", "READY") is None, "planted: the READY org's meter would stop"
