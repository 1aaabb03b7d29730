"""BillingMeter on the time-skipping server: Temporal actions per metered hour, measured from history."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity

from bridgehead import models as m
from bridgehead.history_stats import count_actions
from tests.support.meter_fakes import (
    close_an_hour,
    close_nothing,
    closed,
    corrected,
    meter_nothing,
    meter_sent,
    steady_meter,
)
from tests.support.timeskip import at_minute, serve


@asynccontextmanager
async def running_meter(ts_env: Any, prefix: str, *activities: Any) -> AsyncIterator[Any]:
    """A ``BillingMeter`` for a new org ``{prefix}{random}`` (workflow id ``billing-{org}``) on its
    own task queue, served by a worker with these fake activities for as long as the block runs."""
    async with serve(ts_env, activities) as w:
        yield await w.start_meter(f"{prefix}{uuid.uuid4().hex[:6]}")


async def _record(h: Any, variant: str) -> None:
    """Store this run's history in the replay corpus (with BRIDGEHEAD_RECORD_HISTORIES set)."""
    import os

    if os.environ.get("BRIDGEHEAD_RECORD_HISTORIES"):
        from tests.test_replay import HISTORIES

        (HISTORIES / f"BillingMeter--{variant}.json").write_text(
            (await h.fetch_history()).to_json()
        )
        (HISTORIES / f"BillingMeter--{variant}.id").write_text(h.id + "\n")


async def test_billing_ticks_cost_at_most_4_actions_per_hour(ts_env):
    ticks: list[str] = []

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        ticks.append(req.until.isoformat())
        return closed(req, written=3, node_minutes=300, cost="1.5")

    async with running_meter(ts_env, "tick", close_billing_periods, meter_sent) as h:
        hours = 24
        await ts_env.sleep(timedelta(hours=hours, minutes=15))
        usage = await h.query("usage", result_type=m.UsageTotals)
        hist = await h.fetch_history()
        # A live workflow without a worker would stall time skipping for the other tests.
        await h.terminate("test finished")
    assert usage.periods_closed >= hours and len(ticks) == usage.periods_closed
    assert usage.node_minutes == 300 * usage.periods_closed
    actions = count_actions(hist.events)
    per_hour = actions / usage.periods_closed
    assert per_hour <= 4, per_hour  # 1 timer + 2 activities per tick (+1 upsert at start)
    # History per tick is constant, so a run of TICKS_PER_RUN ticks stays under a few thousand events.
    from workflows.billing import TICKS_PER_RUN

    assert len(hist.events) / usage.periods_closed * TICKS_PER_RUN < 3000


async def test_a_year_of_ticks_keeps_every_run_under_the_continue_as_new_bound(ts_env):
    """BillingMeter for 365 days of time-skipped ticks: it continues as new every TICKS_PER_RUN
    ticks, so every run's history stays under a few thousand events, and no tick is lost."""
    import os

    from workflows.billing import TICKS_PER_RUN

    # CI default: 60 days (1,440 ticks, 15 runs; every run is the same shape, so this is the steady
    # state). The full year: BRIDGEHEAD_TEST_BILLING_DAYS=365 (about 2.5 min on a 2-core machine).
    days = int(os.environ.get("BRIDGEHEAD_TEST_BILLING_DAYS", "60"))

    async with running_meter(ts_env, "year", *steady_meter()) as h:
        wf_id = h.id
        for _ in range(days):  # one long sleep would outlast the test server's RPC deadline
            await ts_env.sleep(timedelta(days=1))
        await ts_env.sleep(timedelta(minutes=15))
        usage = await ts_env.client.get_workflow_handle(wf_id).query(
            "usage", result_type=m.UsageTotals
        )
        # Walk the continue-as-new chain back from the latest run (the test server has no visibility).
        sizes, run_id = [], (await ts_env.client.get_workflow_handle(wf_id).describe()).run_id
        while run_id:
            hist = await ts_env.client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
            sizes.append(len(hist.events))
            run_id = hist.events[
                0
            ].workflow_execution_started_event_attributes.continued_execution_run_id
        await ts_env.client.get_workflow_handle(wf_id).terminate("test finished")
    hours = days * 24
    assert hours - 1 <= usage.periods_closed <= hours + 1, usage.periods_closed
    assert (
        usage.node_minutes == 60 * usage.periods_closed
    )  # totals carried across every continue-as-new
    assert len(sizes) >= usage.periods_closed // TICKS_PER_RUN
    assert max(sizes) < 3000, max(sizes)


async def test_stop_is_refused_while_a_cluster_runs_then_closes_the_last_hour(ts_env):
    """Offboarding's ``stop``: while the ledger says a cluster still runs, the final close is
    refused and ticking goes on; once nothing runs, the meter closes the current, unfinished hour
    (``final``), meters it and ends with its totals."""
    from temporalio.exceptions import ApplicationError

    running = {"yes": True}
    calls: list[m.CloseBillingPeriodsInput] = []

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        calls.append(req)
        if req.final and running["yes"]:
            raise ApplicationError(
                "cannot close the final billing period: c1 still running", non_retryable=True
            )
        return closed(req)

    async with running_meter(ts_env, "stop", close_billing_periods, meter_sent) as h:
        await ts_env.sleep(timedelta(hours=2))
        await h.signal("stop")
        await ts_env.sleep(timedelta(hours=2))
        refused = [c for c in calls if c.final]
        assert len(refused) == 1, "one final attempt, refused; then the hourly ticks go on"
        assert (await h.describe()).status.name == "RUNNING"
        ticks_after_refusal = [c for c in calls[calls.index(refused[0]) + 1 :] if not c.final]
        assert len(ticks_after_refusal) >= 1
        running["yes"] = False
        t0 = await ts_env.get_current_time()
        await h.signal("stop")
        usage = await h.result()
    last = calls[-1]
    assert last.final and last.until.minute == 0 and last.until.second == 0
    assert timedelta(0) < last.until - t0 <= timedelta(hours=1, minutes=1), (
        "the current, unfinished hour is closed too"
    )
    assert usage.periods_closed == len([c for c in calls if not c.final]) + 1
    assert usage.metered_records == usage.periods_closed


async def test_final_stop_resends_usage_marketplace_left_unprocessed(ts_env):
    """At the final stop no later tick would send throttled usage: the meter stays a tick longer
    per retry, until Marketplace takes it, and at most ``FINAL_METER_RETRIES`` ticks."""
    from workflows.billing import FINAL_METER_RETRIES

    async def stop_with(throttled_calls: int) -> tuple[m.UsageTotals, list[bool], int]:
        meters: list[bool] = []

        @activity.defn(name="meter_usage")
        def meter_usage(req: m.MeterUsageInput) -> m.MeterUsageResult:
            meters.append(True)
            if len(meters) <= throttled_calls:
                return m.MeterUsageResult(
                    sent=0,
                    already_sent=0,
                    unprocessed=1,
                    transient=1,
                    messages=["node-minutes.t3.medium: unprocessed"],
                )
            return m.MeterUsageResult(sent=1, already_sent=0, unprocessed=0)

        async with running_meter(ts_env, "final", close_an_hour, meter_usage) as h:
            await h.signal("stop")
            usage = await h.result()
            desc = await h.describe()
            took = desc.close_time - desc.start_time
            if throttled_calls == 2:
                await _record(h, "final-retry")
        return usage, meters, int(took / timedelta(hours=1))

    usage, meters, hours = await stop_with(2)
    assert len(meters) == 3 and hours == 2, (
        meters,
        hours,
    )  # two throttled attempts, an hour apart, then accepted
    assert usage.metered_records == 1 and usage.unprocessed_records == 0
    usage, meters, hours = await stop_with(100)
    assert len(meters) == FINAL_METER_RETRIES + 1 and hours == FINAL_METER_RETRIES, (meters, hours)
    assert usage.unprocessed_records == 1, "given up on and reported"


async def test_meter_refuses_a_foreign_id_and_carried_state_on_a_fresh_start(ts_env):
    from temporalio.client import WorkflowFailureError

    async with serve(ts_env) as w:
        bad_id = await w.start(
            "BillingMeter",
            m.BillingMeterInput(org_id="acme"),
            id=f"billing-other-{uuid.uuid4().hex[:6]}",
        )
        org = f"carry{uuid.uuid4().hex[:6]}"
        forged = m.BillingMeterInput(org_id=org, totals=m.UsageTotals(node_minutes=10**6))
        carried = await w.start("BillingMeter", forged, id=f"billing-{org}")
        for h, what in ((bad_id, "does not match its input"), (carried, "internal state")):
            with pytest.raises(WorkflowFailureError) as e:
                await h.result()
            assert what in str(e.value.cause), e.value.cause


async def test_meter_now_closes_the_open_hour_up_to_now_and_meters_it(ts_env):
    """unsubscribe-pending: the meter closes usage up to the signal's moment (the open hour's part
    included) and meters it at once, then keeps ticking."""
    calls: list[m.CloseBillingPeriodsInput] = []
    meters: list[str] = []

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        calls.append(req)
        return closed(req, node_minutes=10, cost="0.01")

    @activity.defn(name="meter_usage")
    def meter_usage(req: m.MeterUsageInput) -> m.MeterUsageResult:
        meters.append(req.org_id)
        return m.MeterUsageResult(sent=1, already_sent=0, unprocessed=0)

    # Started at 20 past, the signal comes at 55 past: not at the minute of a tick (10 past),
    # which a start at 35 past would give (the wall clock decided, and the check below failed).
    await at_minute(ts_env, 20)
    async with running_meter(ts_env, "now", close_billing_periods, meter_usage) as h:
        await ts_env.sleep(timedelta(minutes=95))
        before = len(calls)
        t0 = await ts_env.get_current_time()
        await h.signal("meter_now")
        await ts_env.sleep(timedelta(seconds=5))
        partial = calls[before:]
        assert len(partial) == 1 and partial[0].partial and not partial[0].final, partial
        assert (
            abs(partial[0].until - t0) < timedelta(seconds=5) and partial[0].until.minute != 10
        ), "up to now, not to the hour"
        assert len(meters) == len(calls), "metered right after"
        await ts_env.sleep(timedelta(minutes=75))  # the next tick is at most an hour and GRACE away
        assert not calls[-1].partial and len(calls) > before + 1, "ticking goes on"
        await _record(h, "meter-now")
        await h.terminate("test finished")


async def test_correct_records_a_correction_and_is_audited_in_history(ts_env):
    got: list[m.RecordCorrectionInput] = []

    @activity.defn(name="record_correction")
    def record_correction(req: m.RecordCorrectionInput) -> m.CorrectResult:
        got.append(req)
        return corrected(req, original=120, net=120 + req.correction.node_minutes_delta)

    from temporalio.client import WorkflowUpdateFailedError

    async with running_meter(ts_env, "corr", close_nothing, meter_nothing, record_correction) as h:
        period = "2026-11-02T09:00:00Z"
        fix = m.CorrectInput(
            cluster="c1",
            period=period,
            node_minutes_delta=-60,
            reason="spot interruption not billed",
        )
        res = await h.execute_update("correct", fix, id="credit-1", result_type=m.CorrectResult)
        with pytest.raises(WorkflowUpdateFailedError):
            await h.execute_update(
                "correct",
                fix.model_copy(update={"node_minutes_delta": 0}),
                result_type=m.CorrectResult,
            )
        with pytest.raises(WorkflowUpdateFailedError):
            await h.execute_update(
                "correct",
                fix.model_copy(update={"period": fix.period.replace(minute=5)}),
                result_type=m.CorrectResult,
            )
        usage = await h.query("usage", result_type=m.UsageTotals)
        hist = await h.fetch_history()
        await _record(h, "correct")
        await h.terminate("test finished")
    assert len(got) == 1 and got[0].correction_id == "credit-1" and got[0].correction == fix, (
        "refused updates run nothing"
    )
    assert res.net_node_minutes == 60 and usage.corrections == 1 and usage.node_minutes == -60
    accepted = [
        e for e in hist.events if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert (
        len(accepted) == 1
        and b"spot interruption"
        in accepted[0]
        .workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads[0]
        .data
    )


async def test_not_subscribed_notice_is_emailed_once_and_metering_state_is_shown(ts_env):
    mails: list[m.NotifyInput] = []
    answers = iter(
        [
            m.MeterUsageResult(
                sent=0,
                already_sent=0,
                unprocessed=1,
                not_subscribed=True,
                notice=m.MeteringNotice(
                    to="a@x.example", subject="metering stopped", body="b", idempotency_key="k1"
                ),
            )
        ]
    )

    @activity.defn(name="meter_usage")
    def meter_usage(req: m.MeterUsageInput) -> m.MeterUsageResult:
        return next(
            answers,
            m.MeterUsageResult(
                sent=0,
                already_sent=0,
                unprocessed=0,
                skipped="AWS Marketplace subscription is NOT_SUBSCRIBED",
            ),
        )

    @activity.defn(name="notify")
    def notify(req: m.NotifyInput) -> bool:
        mails.append(req)
        return True

    async with running_meter(ts_env, "notice", close_nothing, meter_usage, notify) as h:
        await ts_env.sleep(timedelta(hours=3))
        usage = await h.query("usage", result_type=m.UsageTotals)
        await h.terminate("test finished")
    assert [x.idempotency_key for x in mails] == ["k1"]
    assert usage.metering_skipped and "NOT_SUBSCRIBED" in usage.metering_skipped


async def test_final_stop_waits_for_the_next_hour_when_this_hour_has_its_batch(ts_env):
    """Marketplace keeps one record per customer, dimension and hour: when the hour of the final
    stop already has its batch, ``meter_usage`` defers the rest, and the meter sends it in the
    next clock hour before it ends (never a second record in the same hour)."""

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        return closed(req, node_minutes=30, cost="0.02")

    hours_metered: list[str] = []

    @activity.defn(name="meter_usage")
    def meter_usage(req: m.MeterUsageInput) -> m.MeterUsageResult:
        at = activity.info().current_attempt_scheduled_time
        hour = at.replace(minute=0, second=0, microsecond=0).isoformat()
        if not hours_metered:  # the hour of the stop already had its batch
            hours_metered.append(hour)
            return m.MeterUsageResult(sent=0, already_sent=0, unprocessed=0, deferred=30)
        hours_metered.append(hour)
        return m.MeterUsageResult(sent=1, already_sent=0, unprocessed=0)

    async with running_meter(ts_env, "defer", close_billing_periods, meter_usage) as h:
        await h.signal("stop")
        usage = await h.result()
    assert len(hours_metered) == 2 and hours_metered[0] != hours_metered[1], hours_metered
    assert usage.metered_records == 1


def _net_checking_correction(net: dict[str, int], running: list[int], overlaps: list[int]) -> Any:
    """A ``record_correction`` that, like the real one, reads the period's net, refuses a credit
    beyond it, then writes (slowly, so two concurrent ones would both read the old net)."""
    import threading
    import time

    lock = threading.Lock()

    @activity.defn(name="record_correction")
    def record_correction(req: m.RecordCorrectionInput) -> m.CorrectResult:
        from temporalio.exceptions import ApplicationError

        with lock:
            running.append(1)
            overlaps.append(len(running))
        try:
            c = req.correction
            seen = net["c1"]
            time.sleep(0.3)
            if seen + c.node_minutes_delta < 0:
                raise ApplicationError("credit beyond the period's net", non_retryable=True)
            net["c1"] = seen + c.node_minutes_delta
            return corrected(req, original=60, net=net["c1"])
        finally:
            with lock:
                running.pop()

    return record_correction


async def test_concurrent_corrections_never_credit_beyond_the_net(ts_env):
    """Two ``correct`` updates of -60 at once on a period billed 60: one is taken, the other is
    refused (the meter runs one correction at a time, so the second sees the first)."""
    import asyncio

    from temporalio.client import WorkflowUpdateFailedError

    net, running, overlaps = {"c1": 60}, [], []
    correction = _net_checking_correction(net, running, overlaps)
    async with running_meter(ts_env, "conc", close_nothing, meter_nothing, correction) as h:
        fix = m.CorrectInput(
            cluster="c1",
            period="2026-11-02T09:00:00Z",
            node_minutes_delta=-60,
            reason="spot credit",
        )
        got = await asyncio.gather(
            *(
                h.execute_update("correct", fix, id=f"c-{i}", result_type=m.CorrectResult)
                for i in range(2)
            ),
            return_exceptions=True,
        )
        await h.terminate("test finished")
    refused = [g for g in got if isinstance(g, WorkflowUpdateFailedError)]
    assert len(refused) == 1 and net["c1"] == 0, (got, net)
    assert max(overlaps) == 1, "corrections ran one at a time"


def test_twin_two_corrections_at_once_credit_twice():
    """Planted defect: the same two corrections run at once (as the meter did without its lock):
    both read a net of 60 and both are taken; the test above would see ``max(overlaps) == 2``."""
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.testing import ActivityEnvironment

    net, running, overlaps = {"c1": 60}, [], []
    correction = _net_checking_correction(net, running, overlaps)
    req = m.RecordCorrectionInput(
        org_id="acme",
        correction_id="c",
        correction=m.CorrectInput(
            cluster="c1",
            period="2026-11-02T09:00:00Z",
            node_minutes_delta=-60,
            reason="spot credit",
        ),
        requested_at="2026-11-03T00:00:00Z",
    )
    both_in = threading.Barrier(2)  # the two start together, however loaded the machine

    def run(_: int) -> m.CorrectResult:
        both_in.wait(timeout=30)
        return ActivityEnvironment().run(correction, req)

    with ThreadPoolExecutor(2) as ex:
        taken = list(ex.map(run, range(2)))
    assert len(taken) == 2 and max(overlaps) == 2, "120 minutes credited on a period of 60"
