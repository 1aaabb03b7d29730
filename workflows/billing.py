"""``BillingMeter``: durable hourly ticks that turn running time into ledger entries and metering.

Temporal cost per tick is constant, whatever the number of clusters or minutes: one timer and two
activities (3 actions), about 17 history events. With hourly ticks that is 3 actions per org-hour,
so at most 3 per cluster-hour (less with more clusters), and the run continues as new every
``TICKS_PER_RUN`` ticks (about 1,700 events) so history never passes a few thousand events.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead.models import (
        BillingMeterInput,
        CloseBillingPeriodsInput,
        CloseBillingPeriodsResult,
        MeterUsageInput,
        MeterUsageResult,
        UsageTotals,
    )

from workflows._common import call, root_message, upsert
from workflows._options import AWS_CALL, REGISTRY

TICKS_PER_RUN = 100
#: After the final close, ticks spent resending usage Marketplace left unprocessed (throttling).
FINAL_METER_RETRIES = 6
#: A period closes this long after it ends, so a delete received just before the hour is recorded.
GRACE = timedelta(minutes=10)


@workflow.defn(name="BillingMeter", failure_exception_types=[ValidationError])
class BillingMeterWorkflow:
    @workflow.init
    def __init__(self, input: BillingMeterInput) -> None:
        self._totals = input.totals or UsageTotals()
        self._stop = input.stopping

    @workflow.signal
    def stop(self) -> None:
        """Offboarding: close the current hour, meter it, and end (refused while a cluster runs)."""
        self._stop = True

    @workflow.query
    def usage(self) -> UsageTotals:
        return self._totals

    @workflow.run
    async def run(self, input: BillingMeterInput) -> UsageTotals:
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
            if workflow.patched("billing-stop"):
                if not self._stop:
                    try:
                        await workflow.wait_condition(lambda: self._stop, timeout=timedelta(seconds=max(1, wake - epoch)))
                    except TimeoutError:
                        pass
            else:
                await workflow.sleep(max(1, wake - epoch))
            final = self._stop
            # Stopping closes the current hour too: every cluster has ended, so nothing is billed ahead.
            until = workflow.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1) if final else workflow.now() - GRACE
            try:
                closed: CloseBillingPeriodsResult = await call(
                    "close_billing_periods", CloseBillingPeriodsInput(org_id=input.org_id, until=until, final=final), CloseBillingPeriodsResult,
                    summary="close the final billing period" if final else "close finished billing periods", **REGISTRY,
                )  # fmt: skip
            except ActivityError as e:
                if not final:
                    raise
                workflow.logger.warning(f"stop refused, billing continues: {root_message(e)}", extra={"org_id": input.org_id})
                self._stop = final = False
                continue
            if closed.ledger_node_minutes is not None:
                # The ledger's own totals: exact even when a crashed attempt wrote entries and the
                # retry found them existing (its own counts would then be 0).
                t.node_minutes, t.ledger_entries = closed.ledger_node_minutes, closed.ledger_entries or 0
                t.cost_usd = closed.ledger_cost_usd or t.cost_usd
            else:
                t.node_minutes += closed.node_minutes
                t.cost_usd += closed.cost_usd
                t.ledger_entries += closed.entries_written
            t.periods_closed += 1
            t.last_tick = workflow.now()
            try:
                metered: MeterUsageResult = await call("meter_usage", MeterUsageInput(org_id=input.org_id), MeterUsageResult,
                                                       summary="AWS Marketplace metering", **AWS_CALL)  # fmt: skip
                t.metered_records += metered.sent
                t.unprocessed_records = metered.unprocessed
                if final and metered.transient and final_retries < FINAL_METER_RETRIES and workflow.patched("billing-final-meter"):
                    # Marketplace throttled part of the last usage: no later tick will send it, so
                    # stay a little longer (past its window the activity carries it forward).
                    final_retries += 1
                    workflow.logger.warning(f"{metered.transient} usage records unprocessed at the final stop, retrying in a tick",
                                            extra={"org_id": input.org_id})  # fmt: skip
                    await workflow.sleep(tick)
                    continue
                if final and metered.unprocessed:
                    # Refused records stay PENDING in the ledger (METER#...) for an operator to settle.
                    workflow.logger.warning(f"meter stopped with {metered.unprocessed} usage records refused by Marketplace: "
                                            + "; ".join(metered.messages), extra={"org_id": input.org_id})  # fmt: skip
            except ActivityError as e:
                # The ledger is the source of truth; unsent usage is retried next tick.
                workflow.logger.warning(f"metering failed, retrying next tick: {root_message(e)}", extra={"org_id": input.org_id})
                if final:
                    # The last usage must reach Marketplace: try again a tick later.
                    await workflow.sleep(tick)
                    continue
            if final:
                return t
        workflow.continue_as_new(input.model_copy(update={"totals": t, "stopping": self._stop}))
