"""``BillingMeter``: durable hourly ticks that turn running time into ledger entries and metering.

Temporal cost per tick is constant, whatever the number of clusters or minutes: one timer and two
activities (3 actions), about 17 history events. With hourly ticks that is 3 actions per org-hour,
so at most 3 per cluster-hour (less with more clusters), and the run continues as new every
``TICKS_PER_RUN`` ticks (about 1,700 events) so history never passes a few thousand events.

Off the hourly path, and only when they happen: signal ``meter_now`` (unsubscribe-pending) adds
one early tick; update ``correct`` adds its update events and one activity; a
``CustomerNotSubscribed`` answer adds one ``notify`` activity. ``BillingReport`` is a separate,
short workflow (one activity) so reading the bill adds nothing to the meter's history.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        BillingMeterInput,
        BillingReport,
        BillingReportInput,
        CloseBillingPeriodsInput,
        CloseBillingPeriodsResult,
        CorrectInput,
        CorrectResult,
        MeterUsageInput,
        MeterUsageResult,
        NotifyInput,
        RecordCorrectionInput,
        UsageTotals,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._budget import act_on_budget
from workflows._common import (
    bind_input,
    continued_by_itself,
    require_input,
    require_payload,
    root_message,
    upsert,
)
from workflows._options import AWS_CALL, LEDGER_WORK, NOTIFY, REGISTRY

TICKS_PER_RUN = 100
#: After the final close, ticks spent resending usage Marketplace left unprocessed (throttling).
FINAL_METER_RETRIES = 6
#: A period closes this long after it ends, so a delete received just before the hour is recorded.
GRACE = timedelta(minutes=10)


@workflow.defn(name="BillingMeter", failure_exception_types=[ValidationError])
class BillingMeterWorkflow:
    @workflow.init
    def __init__(self, input: BillingMeterInput | None = None) -> None:
        _patches.start(self)  # first: the run decides its patch baseline before any handler
        # A start without input fails in ``run``; the placeholder only keeps queries answerable.
        input = input or BillingMeterInput.model_construct(org_id="-")
        self._org_id = input.org_id
        # Carried state only from this workflow's own previous run (see workflows/_common.py).
        own = continued_by_itself()
        self._totals = (input.totals if own else None) or UsageTotals()
        self._stop = input.stopping if own else False
        self._meter_now = False
        # One correction at a time: each checks the period's net before it writes.
        self._correcting = asyncio.Lock()

    @workflow.signal
    def stop(self) -> None:
        """Offboarding: close the current hour, meter it, and end (refused while a cluster runs)."""
        self._stop = True

    @workflow.signal
    def meter_now(self) -> None:
        """Close the usage up to now, the open hour's part included, and meter it at once (sent by
        ``MarketplaceSubscription`` on ``unsubscribe-pending``: AWS takes the last usage records
        within an hour of it). Ticking then goes on."""
        self._meter_now = True

    @workflow.update
    async def correct(self, req: CorrectInput) -> CorrectResult:
        """Credit (negative delta) or add node-minutes to a closed period of a cluster.

        Recorded as a correction entry in the ledger (never changing or deleting an entry), keyed
        by this update's id so a retried update records it once; audited in history (this update's
        input and result). Corrections are never sent to Marketplace: usage it accepted stays
        accepted, and the report shows original, corrections and net (credits to settle).
        """
        info = workflow.current_update_info()
        update_id = info.id if info is not None else str(workflow.uuid4())
        rec = RecordCorrectionInput(
            org_id=self._org_id,
            correction_id=update_id,
            correction=req,
            requested_at=workflow.now(),
        )
        async with self._correcting:
            result: CorrectResult = await acts.record_correction(
                rec, summary=f"correct {req.cluster} at {req.period.isoformat()}", **REGISTRY
            )
        self._totals.corrections += 1
        self._totals.node_minutes += result.node_minutes_delta
        self._totals.cost_usd += result.cost_usd_delta
        workflow.logger.info(
            f"billing correction {result.correction_id}: {result.node_minutes_delta:+d} node-minutes of {result.instance_type} "
            f"for {req.cluster} at {req.period.isoformat()} ({req.reason})",
            extra={"org_id": self._org_id},
        )
        return result

    @correct.validator
    def _check_correct(self, req: CorrectInput) -> None:
        require_payload(
            req,
            "correct",
            '{"cluster": "c1", "period": "2026-11-02T09:00:00Z", "node_minutes_delta": -60, "reason": "..."}',
        )
        if req.node_minutes_delta == 0:
            raise ApplicationError("node_minutes_delta must not be 0", type="BadInput")
        if req.period.tzinfo is None or req.period != req.period.replace(
            minute=0, second=0, microsecond=0
        ):
            raise ApplicationError(
                f"period must be the start of an hour in UTC, e.g. 2026-11-02T09:00:00Z, not {req.period}",
                type="BadInput",
            )

    @workflow.query
    def usage(self) -> UsageTotals:
        return self._totals

    @workflow.run
    async def run(self, input: BillingMeterInput | None = None) -> UsageTotals:
        require_input(input, "BillingMeter", '{"org_id": "acme"}')
        assert input is not None
        if _patches.patched("billing-input-checks"):
            bind_input(
                ids.billing_workflow_id(input.org_id),
                carried={f: getattr(input, f) for f in ("cursor", "totals", "stopping")},
            )
        upsert(org_id=input.org_id)
        t = self._totals
        tick = timedelta(minutes=input.tick_minutes)
        final_retries = 0
        for _ in range(TICKS_PER_RUN):
            now = workflow.now()
            # Sleep to the next tick boundary (+grace), aligned to the clock so periods close promptly.
            epoch = int(now.timestamp())
            step = int(tick.total_seconds())
            wake = (epoch // step + 1) * step + int(GRACE.total_seconds())
            if _patches.patched("billing-stop"):
                if not (self._stop or self._meter_now):
                    try:
                        await workflow.wait_condition(
                            lambda: self._stop or self._meter_now,
                            timeout=timedelta(seconds=max(1, wake - epoch)),
                        )
                    except TimeoutError:
                        pass
            else:
                await workflow.sleep(max(1, wake - epoch))
            final = self._stop
            # Only set by the signal meter_now, which histories before it never hold.
            partial, self._meter_now = self._meter_now and not final, False
            # Stopping closes the current hour too: every cluster has ended, so nothing is billed ahead.
            if final:
                until = workflow.now().replace(minute=0, second=0, microsecond=0) + timedelta(
                    hours=1
                )
            else:
                until = workflow.now() if partial else workflow.now() - GRACE
            what = (
                "close the final billing period"
                if final
                else "close usage up to now (final metering)"
                if partial
                else "close finished billing periods"
            )
            try:
                closed: CloseBillingPeriodsResult = await acts.close_billing_periods(
                    CloseBillingPeriodsInput(
                        org_id=input.org_id, until=until, final=final, partial=partial
                    ),
                    summary=what,
                    **LEDGER_WORK,
                )
            except ActivityError as e:
                if not final:
                    raise
                workflow.logger.warning(
                    f"stop refused, billing continues: {root_message(e)}",
                    extra={"org_id": input.org_id},
                )
                self._stop = final = False
                continue
            if closed.ledger_node_minutes is not None:
                # The ledger's own totals: exact even when a crashed attempt wrote entries and the
                # retry found them existing (its own counts would then be 0).
                t.node_minutes, t.ledger_entries = (
                    closed.ledger_node_minutes,
                    closed.ledger_entries or 0,
                )
                t.cost_usd = closed.ledger_cost_usd or t.cost_usd
            else:
                t.node_minutes += closed.node_minutes
                t.cost_usd += closed.cost_usd
                t.ledger_entries += closed.entries_written
            t.periods_closed += 1
            t.last_tick = workflow.now()
            if closed.budget is not None and not final and _patches.patched("budget-thresholds"):
                await act_on_budget(input.org_id, t, closed.budget)
            try:
                metered: MeterUsageResult = await acts.meter_usage(
                    MeterUsageInput(org_id=input.org_id),
                    summary="AWS Marketplace metering",
                    **AWS_CALL,
                )
                t.metered_records += metered.sent
                t.unprocessed_records = metered.unprocessed
                t.metering_defects += metered.defects
                if metered.skipped != t.metering_skipped and (
                    metered.skipped or t.metering_skipped
                ):
                    t.metering_skipped = metered.skipped
                if metered.defects:
                    workflow.logger.error(
                        f"Marketplace refused {metered.defects} usage records as DuplicateRecord (flagged in the ledger): "
                        + "; ".join(metered.messages),
                        extra={"org_id": input.org_id},
                    )
                if metered.notice is not None:
                    n = metered.notice
                    workflow.logger.warning(n.subject, extra={"org_id": input.org_id})
                    try:
                        await acts.notify(
                            NotifyInput(
                                to=n.to,
                                subject=n.subject,
                                body=n.body,
                                idempotency_key=n.idempotency_key,
                            ),
                            summary="tell the admin metering stopped",
                            **NOTIFY,
                        )
                    except (
                        ActivityError
                    ) as e:  # the ledger and log hold it; an email must not stop billing
                        workflow.logger.warning(
                            f"could not email the admin: {root_message(e)}",
                            extra={"org_id": input.org_id},
                        )
                if (
                    final
                    and metered.deferred
                    and final_retries < FINAL_METER_RETRIES
                    and _patches.patched("hourly-batches")
                ):
                    # This hour already has its batch (one record per customer, dimension and
                    # hour): the last usage goes out in the next hour, still in AWS's window.
                    final_retries += 1
                    now = workflow.now()
                    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
                    workflow.logger.info(
                        f"{metered.deferred} node-minutes wait for the next hour's batch before the meter stops",
                        extra={"org_id": input.org_id},
                    )
                    await workflow.sleep(next_hour + timedelta(minutes=1) - now)
                    continue
                if (
                    final
                    and metered.transient
                    and final_retries < FINAL_METER_RETRIES
                    and _patches.patched("billing-final-meter")
                ):
                    # Marketplace throttled part of the last usage: no later tick will send it, so
                    # stay a little longer (past its window the activity carries it forward).
                    final_retries += 1
                    workflow.logger.warning(
                        f"{metered.transient} usage records unprocessed at the final stop, retrying in a tick",
                        extra={"org_id": input.org_id},
                    )
                    await workflow.sleep(tick)
                    continue
                if final and metered.unprocessed:
                    # Refused records stay PENDING in the ledger (METER#...) for an operator to settle.
                    workflow.logger.warning(
                        f"meter stopped with {metered.unprocessed} usage records refused by Marketplace: "
                        + "; ".join(metered.messages),
                        extra={"org_id": input.org_id},
                    )
            except ActivityError as e:
                # The ledger is the source of truth; unsent usage is retried next tick.
                workflow.logger.warning(
                    f"metering failed, retrying next tick: {root_message(e)}",
                    extra={"org_id": input.org_id},
                )
                if final:
                    # The last usage must reach Marketplace: try again a tick later.
                    await workflow.sleep(tick)
                    continue
            if final:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return t
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(input.model_copy(update={"totals": t, "stopping": self._stop}))


@workflow.defn(name="BillingReport", failure_exception_types=[ValidationError])
class BillingReportWorkflow:
    """The organisation's bill, read from the ledger by the worker (so ``starter billing report``
    needs only Temporal, never AWS credentials): one activity, a handful of history events."""

    @workflow.run
    async def run(self, input: BillingReportInput) -> BillingReport:
        bind_input(ids.billing_report_workflow_id(input.org_id, input.month))
        req = input.model_copy(update={"now": input.now or workflow.now()})
        return await acts.billing_report(
            req, summary=f"billing report of {input.org_id}", **LEDGER_WORK
        )
