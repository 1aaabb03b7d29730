"""Marketplace metering by AWS's documented rules (tests/support/fake_marketplace.py), with the real
ledger (moto in process): what the fake received is what is asserted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.billing import BillingActivities, billing_report, ledger_entries
from bridgehead import models as m
from tests.integration.helpers import ledger_org
from tests.support.fake_marketplace import FakeMarketplace, install, link_org

ACTIVITIES = ("meter_usage",)

ACCOUNT = "232323232323"
T0 = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)


def _org(
    org: str, now: list[datetime], **fake: object
) -> tuple[BillingActivities, FakeMarketplace, object]:
    aws, reg = ledger_org(org, ACCOUNT, admin_email=f"admin@{org}.example")
    link_org(reg, org, ACCOUNT)
    market = FakeMarketplace(subscribed={ACCOUNT}, clock=lambda: now[0], **fake)  # type: ignore[arg-type]
    install(aws, market)
    return BillingActivities(aws, reg, clock=lambda: now[0]), market, reg


def _entry(
    reg: object, org: str, hour: datetime, lines: dict[str, int], cluster: str = "c1"
) -> None:
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": f"PERIOD#{hour.isoformat()}#{cluster}",
            "cluster": cluster,
            "period_start": hour.isoformat(),  # type: ignore[attr-defined]
            "lines": lines,
            "node_minutes": sum(lines.values()),
            "cost_usd": 0,
            "metered": False,
        },
        table=reg.ledger,
    )  # type: ignore[attr-defined]


def test_an_identical_resend_is_a_success_counted_once(in_process_aws):
    """A crash after Marketplace took a batch but before the ledger recorded it: the resend carries
    the very same records (AWS: identical requests are idempotent) and nothing is billed twice."""
    org, now = "idemco", [T0 + timedelta(hours=2, minutes=10)]
    acts, market, reg = _org(org, now)
    _entry(reg, org, T0, {"t3.medium": 60, "c5.xlarge": 240})
    env = ActivityEnvironment()
    # The crash: the worker dies right after Marketplace answered, before the ledger recorded it.
    update_batch = acts.ledger.update_batch

    def crash(*args: object, **kwargs: object) -> None:
        raise SystemExit("worker killed")

    acts.ledger.update_batch = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    acts.ledger.update_batch = update_batch  # type: ignore[method-assign]
    assert len(market.calls) == 1 and market.totals() == {
        "node-minutes.t3.medium": 60,
        "node-minutes.c5.xlarge": 240,
    }
    (batch,) = reg.query(f"ORG#{org}", "METER#", table=reg.ledger)  # type: ignore[attr-defined]
    assert batch["status"] == "PENDING" and batch["acked"] == [], "nothing recorded"
    now[0] += timedelta(minutes=50)
    again = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert again.sent == 2 and again.defects == 0, again
    assert market.calls[0] == market.calls[1], "the resend is identical, timestamp included"
    assert market.totals() == {"node-minutes.t3.medium": 60, "node-minutes.c5.xlarge": 240}, (
        "taken once"
    )
    assert all(e["metered"] for e in ledger_entries(reg, org))  # type: ignore[arg-type]


def _duplicate_record() -> tuple[Any, Any, Any, list[datetime], m.MeterUsageResult]:
    """Marketplace already holds a different quantity for this customer, dimension and second;
    one metering call: (activities, the fake, the registry, the clock, its result)."""
    org, now = "dupco", [T0 + timedelta(hours=1, minutes=10)]
    acts, market, reg = _org(org, now)
    _entry(reg, org, T0, {"t3.medium": 60, "c5.xlarge": 120})
    stamp = now[0].replace(microsecond=0)
    market.accepted.append(
        {
            "Timestamp": stamp,
            "CustomerAWSAccountId": ACCOUNT,
            "Dimension": "node-minutes.c5.xlarge",
            "Quantity": 7,
        }
    )
    res = ActivityEnvironment().run(acts.meter_usage, m.MeterUsageInput(org_id="dupco"))
    return acts, market, reg, now, res


def test_duplicate_record_is_a_defect_flagged_never_acknowledged_nor_resent(in_process_aws):
    """``DuplicateRecord`` is surfaced (result, ledger flags) and never counted as acknowledged."""
    org = "dupco"
    acts, market, reg, now, res = _duplicate_record()
    env = ActivityEnvironment()
    assert (res.sent, res.defects) == (1, 1), res
    assert "DuplicateRecord" in " ".join(res.messages)
    (batch,) = reg.query(f"ORG#{org}", "METER#", table=reg.ledger)
    assert batch["status"] == "DEFECT" and batch["defects"] == {
        "node-minutes.c5.xlarge": "DuplicateRecord"
    }
    assert batch["acked"] == ["node-minutes.t3.medium"], "the duplicate is not an acknowledgement"
    (entry,) = ledger_entries(reg, org)
    assert entry["metered"] is False and entry["metering_defects"] == ["node-minutes.c5.xlarge"]
    # Later calls neither resend nor carry it (either could bill the usage twice).
    calls = len(market.calls)
    now[0] += timedelta(hours=7)
    later = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert len(market.calls) == calls and (later.sent, later.expired, later.defects) == (0, 0, 0)
    # The report surfaces it for an operator.
    report = billing_report(reg, org, None, now[0])
    assert (
        len(report.defects) == 1
        and "node-minutes.c5.xlarge" in report.defects[0]
        and "DuplicateRecord" in report.defects[0]
    )


def test_twin_a_duplicate_taken_for_an_acknowledgement_is_caught(in_process_aws, monkeypatch):
    """Planted: DuplicateRecord counted as acknowledged. The checks above see it."""
    import activities.metering as metering

    monkeypatch.setattr(metering, "ACKNOWLEDGED", frozenset({"Success", "DuplicateRecord"}))
    _, _, reg, _, res = _duplicate_record()
    (batch,) = reg.query("ORG#dupco", "METER#", table=reg.ledger)
    assert (res.sent, res.defects) == (2, 0)
    assert sorted(batch["acked"]) == ["node-minutes.c5.xlarge", "node-minutes.t3.medium"]


def test_customer_not_subscribed_stops_metering_and_tells_the_admin(in_process_aws):
    org, now = "unsubco", [T0 + timedelta(hours=1, minutes=10)]
    acts, market, reg = _org(org, now)
    market.subscribed.clear()
    _entry(reg, org, T0, {"t3.medium": 60})
    env = ActivityEnvironment()
    res = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert res.not_subscribed and res.sent == 0 and res.notice is not None
    assert res.notice.to == f"admin@{org}.example" and "CustomerNotSubscribed" in res.notice.body
    assert reg.marketplace(org)["state"] == "NOT_SUBSCRIBED"  # type: ignore[attr-defined]
    calls = len(market.calls)
    stopped = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert stopped.skipped and "NOT_SUBSCRIBED" in stopped.skipped and len(market.calls) == calls
    # subscribe-success again: the waiting batch goes out, within Marketplace's window.
    market.subscribed.add(ACCOUNT)
    reg.set_marketplace_state(org, "SUBSCRIBED", "subscribe-success", now[0])  # type: ignore[attr-defined]
    now[0] += timedelta(hours=1)
    resumed = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert resumed.sent == 1 and market.totals() == {"node-minutes.t3.medium": 60}


def thirty_dimensions() -> tuple[m.MeterUsageResult, list[int], dict[str, int]]:
    """An hour of 30 instance types metered: the result, each call's record count, the totals."""
    org, now = "wideco", [T0 + timedelta(hours=1, minutes=10)]
    acts, market, reg = _org(org, now)
    types = [f"x{i}.large" for i in range(30)]
    for i, t in enumerate(types):
        _entry(reg, org, T0, {t: i + 1}, cluster=f"c{i}")
    res = ActivityEnvironment().run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert market.totals() == {f"node-minutes.{t}": i + 1 for i, t in enumerate(types)}
    return res, [len(c) for c in market.calls], market.totals()


def test_at_most_25_records_per_call(in_process_aws):
    res, calls, _ = thirty_dimensions()
    assert res.sent == 30 and calls == [25, 5]


def test_twin_without_the_limit_the_hour_is_refused_and_nothing_metered(
    in_process_aws, monkeypatch
):
    """BatchMeterUsage refuses more than 25 records (AWS's API reference, as the fake does): one
    call of 30 is a validation error, not retried, and the hour is not billed."""
    import activities.metering as metering

    monkeypatch.setattr(metering, "MAX_RECORDS", 1000)
    with pytest.raises(ApplicationError) as e:
        thirty_dimensions()
    assert e.value.type == "AwsValidationError" and "at most 25 per call" in e.value.message


def test_usage_from_before_the_link_is_never_metered(in_process_aws):
    org, now = "lateco", [T0 + timedelta(hours=3, minutes=10)]
    aws, reg = ledger_org(org, ACCOUNT)
    link_org(reg, org, ACCOUNT, linked_at=T0 + timedelta(hours=1, minutes=30))
    market = FakeMarketplace(subscribed={ACCOUNT}, clock=lambda: now[0])
    install(aws, market)
    acts = BillingActivities(aws, reg, clock=lambda: now[0])
    _entry(reg, org, T0, {"t3.medium": 60})
    _entry(reg, org, T0 + timedelta(hours=1), {"t3.medium": 30})
    _entry(reg, org, T0 + timedelta(hours=2), {"t3.medium": 45})
    res = ActivityEnvironment().run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert res.sent == 1 and market.totals() == {"node-minutes.t3.medium": 75}, (
        "the linking hour and after"
    )
