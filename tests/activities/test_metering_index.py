"""A metering tick reads only the ledger's two small indexes (activities/ledger.py), and a crash at
any of its writes bills nothing twice and loses nothing: both shown against the real ledger (moto
in process), with the Marketplace fake counting what it received. Each claim has its twin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.billing import BillingActivities
from activities.ledger import Ledger
from bridgehead import billing
from bridgehead import models as m
from tests.integration.helpers import ledger_org
from tests.support.fake_marketplace import FakeMarketplace, install, link_org

ACTIVITIES = ("meter_usage",)

ACCOUNT = "242424242424"
T0 = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)


class Killed(BaseException):
    """The worker died (not an Exception, so nothing in the activity can catch it)."""


def _org(org: str, now: list[datetime]) -> tuple[BillingActivities, FakeMarketplace, Any]:
    aws, reg = ledger_org(org, ACCOUNT, admin_email=f"admin@{org}.example")
    link_org(reg, org, ACCOUNT, linked_at=T0)
    market = FakeMarketplace(subscribed={ACCOUNT}, clock=lambda: now[0])
    install(aws, market)
    return BillingActivities(aws, reg, clock=lambda: now[0]), market, reg


def _usage(ledger: Ledger, org: str, hour: datetime, minutes: int, cluster: str = "c1") -> None:
    lines = {"t3.medium": minutes}
    fields = {
        "period_start": hour.isoformat(),
        "lines": lines,
        "node_minutes": minutes,
        "cost_usd": 0,
        "metered": False,
    }
    assert ledger.add_entry(org, cluster, hour, (hour, hour + billing.PERIOD), fields)


@contextmanager
def _items_read(reg: Any) -> Iterator[list[int]]:
    """Count the ledger items a block reads (queries and gets)."""
    read = [0]
    query, get = reg.query, reg.get

    def counted_query(*a: Any, **k: Any) -> list[dict[str, Any]]:
        found = query(*a, **k)
        read[0] += len(found)
        return found

    def counted_get(*a: Any, **k: Any) -> dict[str, Any] | None:
        found = get(*a, **k)
        read[0] += found is not None
        return found

    reg.query, reg.get = counted_query, counted_get
    try:
        yield read
    finally:
        reg.query, reg.get = query, get


def _reads_per_tick(
    org: str, plant: Callable[[BillingActivities], None] | None = None
) -> list[int]:
    """Meter 24 hours of usage hour by hour; the items read by each tick."""
    now = [T0 + timedelta(minutes=10)]
    acts, market, reg = _org(org, now)
    if plant:
        plant(acts)
    env = ActivityEnvironment()
    reads = []
    for h in range(24):
        _usage(acts.ledger, org, T0 + timedelta(hours=h), 60)
        now[0] = T0 + timedelta(hours=h + 1, minutes=10)
        with _items_read(reg) as read:
            res = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
        assert res.sent == 1, res
        reads.append(read[0])
    assert market.totals() == {"node-minutes.t3.medium": 24 * 60}
    return reads


def _reads_do_not_grow(reads: list[int]) -> bool:
    return max(reads[2:]) == min(reads[2:])


def test_a_metering_tick_reads_the_same_after_a_day_as_after_an_hour(in_process_aws):
    reads = _reads_per_tick("indexco")
    # After the first tick (which builds the index): the org, link, lease, the index item, one
    # unmetered marker, and the batch it writes, whatever the ledger holds.
    assert _reads_do_not_grow(reads), reads


def test_twin_a_tick_that_reads_the_whole_ledger_is_caught(in_process_aws):
    def whole_ledger(acts: BillingActivities) -> None:
        ledger = acts.ledger

        def unmetered(org_id: str) -> list[dict[str, Any]]:
            return [
                {"entry": e["sk"], "lines": e["lines"], "period_start": e["period_start"]}
                for e in ledger.entries(org_id)
                if not e.get("metered")
            ]

        ledger.unmetered = unmetered  # type: ignore[method-assign]

    reads = _reads_per_tick("wholeco", plant=whole_ledger)
    assert not _reads_do_not_grow(reads), reads


#: Every ledger write a tick makes (the kill points).
WRITES = ("settle_entry", "update_batch", "close_batch", "add_batch", "forget_unmetered")


class _KillAt:
    """Make the ``k``-th ledger write of a tick (0-based) kill the worker, then put things back."""

    def __init__(self, ledger: Ledger, k: int) -> None:
        self.ledger, self.k, self.count, self.where = ledger, k, 0, ""
        self.originals = {name: getattr(ledger, name) for name in WRITES}
        for name in WRITES:
            setattr(ledger, name, self._wrap(name))

    def _wrap(self, name: str) -> Callable[..., Any]:
        def write(*a: Any, **kw: Any) -> Any:
            self.count += 1
            if self.count == self.k + 1:
                self.where = f"{name} (write {self.k + 1})"
                raise Killed(self.where)
            return self.originals[name](*a, **kw)

        return write

    def restore(self) -> None:
        for name, f in self.originals.items():
            setattr(self.ledger, name, f)


def _bills_exactly_once_whatever_the_kill_point(
    org_prefix: str, plant: Callable[[Ledger], None] | None = None
) -> tuple[list[str], list[str]]:
    """Kill the tick at its k-th ledger write for every k, then let the retry and the next hours
    run; the Marketplace fake must have received every minute exactly once. Returns the kill
    points tried and those after which it did not."""
    tried: list[str] = []
    wrong: list[str] = []
    for k in range(20):
        org = f"{org_prefix}{k}"
        now = [T0 + timedelta(hours=1, minutes=10)]
        acts, market, _ = _org(org, now)
        if plant:
            plant(acts.ledger)
        _usage(acts.ledger, org, T0, 60)
        _usage(acts.ledger, org, T0, 30, cluster="c2")
        env = ActivityEnvironment()
        kill = _KillAt(acts.ledger, k)
        try:
            env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
        except Killed:
            pass
        kill.restore()
        if not kill.where:
            return tried, wrong  # k is past the last write of a tick: every point was tried
        tried.append(kill.where)
        for _ in range(2):  # the retry, then the next hour
            env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
            now[0] += timedelta(hours=1)
        _usage(acts.ledger, org, T0 + timedelta(hours=2), 15)
        env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
        if market.totals() != {"node-minutes.t3.medium": 105}:
            wrong.append(f"{kill.where}: {market.totals()}")
    raise AssertionError(f"a tick made more than 20 ledger writes: {tried}")


def test_a_kill_at_any_ledger_write_of_a_tick_bills_every_minute_exactly_once(in_process_aws):
    tried, wrong = _bills_exactly_once_whatever_the_kill_point("killco")
    # The batch written, its acknowledgements, two entries settled, its status, its removal from
    # the open index.
    assert len(tried) == 6, tried
    assert wrong == []


def test_twin_markers_removed_after_the_batch_settles_bill_twice(in_process_aws):
    """Planted: an entry leaves the unmetered index only after its batch left PENDING (the wrong
    order); a kill between the two bills it twice, and the test above says so."""

    def late_markers(ledger: Ledger) -> None:
        update_batch = ledger.update_batch

        def settle_flags_only(org_id: str, sk: str, flags: dict[str, Any]) -> None:
            ledger.registry.update(f"ORG#{org_id}", sk, flags, table=ledger.table)

        def update_then_forget(org_id: str, sk: str, fields: dict[str, Any]) -> None:
            update_batch(org_id, sk, fields)
            if fields.get("status") in ("SENT", "DEFECT", "EXPIRED"):
                batch = ledger.registry.get(f"ORG#{org_id}", sk, table=ledger.table) or {}
                for e in batch.get("entries", []):
                    ledger.forget_unmetered(org_id, e)

        ledger.settle_entry = settle_flags_only  # type: ignore[method-assign]
        ledger.update_batch = update_then_forget  # type: ignore[method-assign]

    _, wrong = _bills_exactly_once_whatever_the_kill_point("lateco", plant=late_markers)
    assert wrong, "the planted wrong order must bill some minute twice"


def _legacy_ledger(reg: Any, market: FakeMarketplace, org: str) -> None:
    """A ledger as written before the indexes: a sent batch with its metered entry, a pending batch
    (Marketplace took it; the worker died before recording that) with its entry, and an entry no
    batch holds."""
    pk, table = f"ORG#{org}", reg.ledger
    hours = [T0 + timedelta(hours=h) for h in range(3)]
    for h, minutes, metered in zip(hours, (60, 30, 15), (True, False, False), strict=True):
        entry = {"pk": pk, "sk": f"PERIOD#{h.isoformat()}#c1", "cluster": "c1"}
        entry |= {"period_start": h.isoformat(), "lines": {"t3.medium": minutes}}
        reg.put(entry | {"node_minutes": minutes, "cost_usd": 0, "metered": metered}, table=table)
    for h, status, entry_hour in ((1, "SENT", 0), (2, "PENDING", 1)):
        stamp = (T0 + timedelta(hours=h, minutes=5)).isoformat()
        batch = {"pk": pk, "sk": f"METER#{stamp}", "hour": stamp, "status": status}
        batch |= {"entries": [f"PERIOD#{hours[entry_hour].isoformat()}#c1"], "carries": []}
        minutes = (60, 30)[entry_hour]
        acked = ["node-minutes.t3.medium"] if status == "SENT" else []
        batch |= {"quantities": {"t3.medium": minutes}, "acked": acked}
        reg.put(batch | {"customer_aws_account_id": ACCOUNT}, table=table)
        taken = {"Timestamp": datetime.fromisoformat(stamp), "CustomerAWSAccountId": ACCOUNT}
        market.accepted.append(taken | {"Dimension": "node-minutes.t3.medium", "Quantity": minutes})


def _meters_a_legacy_ledger(org: str, plant: Callable[[Ledger], None] | None = None) -> Any:
    now = [T0 + timedelta(hours=3, minutes=10)]
    acts, market, reg = _org(org, now)
    _legacy_ledger(reg, market, org)
    if plant:
        plant(acts.ledger)
    for _ in range(2):
        ActivityEnvironment().run(acts.meter_usage, m.MeterUsageInput(org_id=org))
        now[0] += timedelta(hours=1)
    return market.totals()


def test_a_ledger_written_before_the_indexes_is_indexed_once_and_metered_exactly(in_process_aws):
    # The pending batch (30) is resent, identical, and counted once; the unbatched entry (15) is
    # batched; the sent one (60) is left alone.
    assert _meters_a_legacy_ledger("legacyidx") == {"node-minutes.t3.medium": 105}


def test_twin_an_index_that_forgets_pending_batches_is_caught(in_process_aws):
    def no_open_batches(ledger: Ledger) -> None:
        put = ledger.registry.put

        def put_but_open(item: dict[str, Any], **kw: Any) -> bool:
            return True if str(item.get("sk", "")).startswith("OPEN#") else put(item, **kw)

        ledger.registry.put = put_but_open  # type: ignore[method-assign]

    assert _meters_a_legacy_ledger("forgetidx", plant=no_open_batches) == {
        "node-minutes.t3.medium": 135
    }, "the forgotten batch's entry is batched again under a new timestamp: billed twice"
