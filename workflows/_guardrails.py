"""Cost guard rails of ``ClusterLifecycle`` (a mixin of the workflow): automatic stop or delete of
an idle cluster or one past its lifetime, each announced by email a grace period ahead (signal
``keep`` cancels it and restarts the idle clock), signals ``stop`` / ``start`` (storage kept,
nothing billed while STOPPED), and deletion protection (update ``set_deletion_protection``).

Determinism: every timer is a ``wait_condition`` timeout computed from ``workflow.now()`` and
carried state; CPU is read by an activity. Signal handlers only record the request; the loop in
:meth:`ClusterGuardrails._guarded_run` decides (see ``cancel`` in workflows/clusters.py for why).
The cost of watching is bounded in bridgehead/guardrails.py (at most 240 / N actions per
cluster-hour); history stays bounded by continue-as-new, as before.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from bridgehead import guardrails as rules
    from bridgehead.models import (
        ClusterState,
        CpuQuery,
        CpuReading,
        DeletionProtectionResult,
        PendingAction,
        PowerInput,
        SetDeletionProtectionInput,
    )

from workflows import _activities as acts
from workflows._common import require_payload, root_message
from workflows._options import AWS_CALL

if TYPE_CHECKING:
    from datetime import datetime

    from bridgehead.models import ClusterLifecycleRun, ClusterRuntime, UsageSegment

SIGNALS = ("keep", "stop", "start", "budget_exceeded")
UPDATES = ("set_deletion_protection",)
#: Decisions kept in ``status`` (the log and the history keep all of them).
KEEP_DECISIONS = 20


class ClusterGuardrails:
    """Signals, update and the RUNNING / STOPPED loop of the guard rails."""

    if TYPE_CHECKING:
        _in: ClusterLifecycleRun
        _rt: ClusterRuntime
        _lock: asyncio.Lock

        def _set(self, state: ClusterState) -> None: ...
        async def _register(self, state: ClusterState) -> None: ...
        async def _notify(self, kind: str, subject: str, body: str) -> None: ...
        def _segment(self, start: datetime, nodes: int) -> UsageSegment: ...
        def _ignored(self, signal: str) -> None: ...

    # --- interface ------------------------------------------------------------------------------
    @workflow.signal
    def keep(self) -> None:
        """Cancel a pending automatic stop or delete; the idle clock restarts."""
        self._rt.keep_requested = True

    @workflow.signal
    def stop(self) -> None:
        """Stop the cluster's instances, keeping its storage; billing pauses until ``start``."""
        self._rt.power_request = "stop"

    @workflow.signal
    def start(self) -> None:
        """Start a STOPPED cluster again."""
        self._rt.power_request = "start"

    @workflow.signal
    def budget_exceeded(self) -> None:
        """Sent by the organisation's ``BillingMeter`` when the month's budget is spent and its
        action is ``stop``: announced and carried out like any automatic action."""
        self._rt.budget_requested = True

    @workflow.update
    async def set_deletion_protection(
        self, req: SetDeletionProtectionInput | None = None
    ) -> DeletionProtectionResult:
        """While enabled, ``delete`` is refused (recorded in ``status``) and automatic actions
        stop instead of deleting."""
        assert req is not None  # the validator refused a missing payload
        self._rt.deletion_protection = req.enabled
        self._decide(f"deletion protection {'enabled' if req.enabled else 'disabled'}")
        return DeletionProtectionResult(enabled=req.enabled)

    @set_deletion_protection.validator
    def _validate_protection(self, req: SetDeletionProtectionInput | None = None) -> None:
        require_payload(req, "set_deletion_protection", '{"enabled": false}')

    @property
    def _protected(self) -> bool:
        p = self._rt.deletion_protection
        return self._in.config.deletion_protection if p is None else p

    def _refuse_delete(self) -> bool:
        """Called by the ``delete`` signal: refused (and recorded) while protection is on."""
        if not self._protected:
            return False
        self._decide(
            'delete refused: deletion protection is on (send the update set_deletion_protection {"enabled": false} first)'
        )
        return True

    def _decide(self, what: str) -> None:
        rt = self._rt
        rt.decisions.append(f"{workflow.now():%Y-%m-%dT%H:%M:%SZ} {what}")
        del rt.decisions[:-KEEP_DECISIONS]
        workflow.logger.info(
            f"guard rail: {what}", extra={"org_id": self._in.org_id, "cluster": self._in.name}
        )

    # --- the loop -------------------------------------------------------------------------------
    def _attention(self) -> bool:
        rt = self._rt
        return (
            rt.delete_requested_at is not None
            or rt.power_request is not None
            or rt.keep_requested
            or rt.budget_requested
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _guarded_run(self) -> None:
        """RUNNING (or STOPPED) until a delete is accepted; then DELETING."""
        rt = self._rt
        now = workflow.now()
        rt.idle_from = rt.idle_from or now
        rt.lifetime_from = rt.lifetime_from or now
        while rt.delete_requested_at is None:
            if rt.power_request is not None:
                await self._apply_power()
                continue
            if rt.keep_requested:
                self._keep()
                continue
            if rt.budget_requested:
                rt.budget_requested = False
                if rt.state == ClusterState.RUNNING and rt.pending is None:
                    await self._announce("budget")
                else:
                    self._decide(
                        "budget spent: nothing to stop (not RUNNING, or an action is pending)"
                    )
                continue
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._in.model_copy(update={"runtime": rt}))
            now = workflow.now()
            if rt.pending is not None and now >= rt.pending.due:
                await self._carry_out()
                continue
            lifetime_at, idle_at = self._lifetime_due(), self._idle_due()
            if lifetime_at is not None and now >= lifetime_at:
                await self._announce("lifetime")
                continue
            if idle_at is not None and now >= idle_at:
                if await self._read_idle():
                    await self._announce("idle")
                continue
            wakes = [t for t in (lifetime_at, idle_at) if t is not None]
            if rt.pending is not None:
                wakes.append(rt.pending.due)
            if not wakes:
                await workflow.wait_condition(self._attention)
                continue
            try:
                await workflow.wait_condition(self._attention, timeout=min(wakes) - now)
            except TimeoutError:
                pass
        async with self._lock:  # let a resize in flight finish first
            if rt.state == ClusterState.RUNNING:
                rt.segments[-1].end = max(rt.segments[-1].start, rt.delete_requested_at)
            self._set(ClusterState.DELETING)
            await self._register(ClusterState.DELETING)

    def _lifetime_due(self) -> datetime | None:
        rt, hours = self._rt, self._in.config.max_lifetime_hours
        if hours is None or rt.pending is not None or rt.lifetime_from is None:
            return None
        action = rules.auto_action(self._in.config, self._protected)
        if rt.state == ClusterState.STOPPED and action == "stop":
            return None  # nothing left to stop
        return rt.lifetime_from + timedelta(hours=hours)

    def _idle_due(self) -> datetime | None:
        rt, minutes = self._rt, self._in.config.auto_stop_idle_minutes
        if minutes is None or rt.pending is not None or rt.state != ClusterState.RUNNING:
            return None
        assert rt.idle_from is not None
        if rt.next_idle_check is None:
            rt.next_idle_check = rt.idle_from + timedelta(minutes=minutes)
        return rt.next_idle_check

    async def _read_idle(self) -> bool:
        """One CPU reading; True when the whole window was idle, else the next reading is set."""
        rt, c = self._rt, self._in.config
        assert rt.idle_from is not None and c.auto_stop_idle_minutes is not None
        window = timedelta(minutes=c.auto_stop_idle_minutes)
        now = workflow.now()
        head = rt.outputs.get("HeadInstanceId")
        reading: CpuReading | None = None  # None: the window is not full yet
        if now - rt.idle_from >= window:
            # No head node known, or a reading that failed: no evidence (read again a window later).
            reading = CpuReading(datapoints=0)
        if reading is not None and head:
            try:
                reading = await acts.head_cpu(
                    CpuQuery(
                        org_id=self._in.org_id,
                        region=self._in.region,
                        instance_id=head,
                        start=rules.idle_window_start(now, rt.idle_from, window),
                        end=now,
                        threshold_percent=c.idle_cpu_percent,
                    ),
                    summary="read head node CPU",
                    **AWS_CALL,
                )
            except ActivityError as e:  # no reading is no evidence of idleness
                self._decide(f"CPU not read: {root_message(e)}")
        if reading is not None and rules.is_idle(now, rt.idle_from, window, reading):
            rt.next_idle_check = None
            return True
        floor = timedelta(minutes=c.idle_check_minutes)
        rt.next_idle_check = rules.next_idle_check(now, rt.idle_from, window, floor, reading)
        return False

    async def _announce(self, reason: Literal["idle", "lifetime", "budget"]) -> None:
        rt, c = self._rt, self._in.config
        action = rules.auto_action(c, self._protected)
        now = workflow.now()
        rt.auto_seq += 1
        due = now + timedelta(minutes=c.auto_action_grace_minutes)
        rt.pending = PendingAction(
            action=action, reason=reason, announced_at=now, due=due, seq=rt.auto_seq
        )
        why = {
            "idle": f"its head node's CPU stayed below {c.idle_cpu_percent:g}% for {c.auto_stop_idle_minutes} minutes",
            "lifetime": f"it reached its maximum lifetime of {c.max_lifetime_hours} hours",
            "budget": "the organisation's monthly budget is spent",
        }[reason]
        what = "stopped (storage kept)" if action == "stop" else "deleted"
        self._decide(f"automatic {action} announced ({reason}), due {due:%Y-%m-%dT%H:%M:%SZ}")
        await self._notify(
            f"auto-{rt.auto_seq}-{action}",
            f"Cluster {self._in.name} will be {what} at {due:%H:%M} UTC",
            f"Cluster {self._in.name} in {self._in.region} will be {what} at {due:%Y-%m-%d %H:%M} UTC "
            f"because {why}. To keep it, send the signal keep (starter cluster keep --org {self._in.org_id} --name {self._in.name}) before then.",
        )

    async def _carry_out(self) -> None:
        rt = self._rt
        pending, rt.pending = rt.pending, None
        assert pending is not None
        action = pending.action
        if action == "delete" and self._protected:
            action = "stop"
        self._decide(f"automatic {action} ({pending.reason}) carried out")
        if action == "delete":
            rt.delete_requested_at = workflow.now()
        elif rt.state == ClusterState.RUNNING:
            await self._power_off()

    def _keep(self) -> None:
        rt = self._rt
        rt.keep_requested = False
        now = workflow.now()
        if rt.pending is not None:
            self._decide(f"automatic {rt.pending.action} ({rt.pending.reason}) cancelled by keep")
            if rt.pending.reason == "lifetime":
                rt.lifetime_from = now
            rt.pending = None
        else:
            self._decide("keep: nothing pending; idle clock restarted")
        rt.idle_from, rt.next_idle_check = now, None

    # --- stop and start -------------------------------------------------------------------------
    async def _apply_power(self) -> None:
        rt = self._rt
        req, rt.power_request = rt.power_request, None
        if req == "stop" and rt.state == ClusterState.RUNNING:
            if rt.pending is not None and rt.pending.action == "stop":
                rt.pending = None  # what it announced is done now
            self._decide("stop requested")
            await self._power_off()
        elif req == "start" and rt.state == ClusterState.STOPPED:
            self._decide("start requested")
            await self._power_on()
        else:
            assert req is not None
            self._ignored(req)

    def _power_input(self) -> PowerInput:
        rt, c = self._rt, self._in.config
        return PowerInput(
            org_id=self._in.org_id,
            region=self._in.region,
            head_instance_id=rt.outputs.get("HeadInstanceId"),
            compute_group=rt.outputs.get("ComputeGroupName"),
            compute_nodes=rt.compute_nodes,
            compute_min_nodes=0 if c.autoscaling else rt.compute_nodes,
        )

    async def _power_off(self) -> None:
        """Billing stops when the stop is decided (as it does for ``delete``)."""
        rt = self._rt
        async with self._lock:
            decided = workflow.now()
            try:
                await acts.stop_cluster_nodes(
                    self._power_input(), summary="stop instances", **AWS_CALL
                )
            except ActivityError as e:
                self._decide(f"stop failed, still RUNNING: {root_message(e)}")
                return
            rt.segments[-1].end = max(rt.segments[-1].start, decided)
            rt.stopped_at = decided
            self._set(ClusterState.STOPPED)
            await self._register(ClusterState.STOPPED)

    async def _power_on(self) -> None:
        """Billing resumes when the instances were started; the idle and lifetime clocks restart."""
        rt = self._rt
        async with self._lock:
            try:
                await acts.start_cluster_nodes(
                    self._power_input(), summary="start instances", **AWS_CALL
                )
            except ActivityError as e:
                self._decide(f"start failed, still STOPPED: {root_message(e)}")
                return
            now = workflow.now()
            rt.segments.append(self._segment(now, rt.compute_nodes))
            rt.stopped_at = None
            rt.idle_from = rt.lifetime_from = now
            rt.next_idle_check = None
            self._set(ClusterState.RUNNING)
            await self._register(ClusterState.RUNNING)
