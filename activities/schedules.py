"""Temporal Schedules the workflows ask for (a workflow cannot create a Schedule itself)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.service import RPCError, RPCStatusCode

from bridgehead.ids import reverify_schedule_id
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import ReverifyInput
from bridgehead.settings import Settings

log = get_logger(__name__)


class ScheduleActivities:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    @activity.defn
    async def ensure_reverify_schedule(self, req: ReverifyInput) -> str:
        """Create the org's daily re-verification Schedule; an existing one is kept (idempotent)."""
        bind_subject(org_id=req.org_id)
        sid = reverify_schedule_id(req.org_id)
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                "ReverifyOrganization", ReverifyInput(org_id=req.org_id), id=sid, task_queue=self.settings.task_queue,
                static_summary=f"daily re-verification of {req.org_id}",
            ),  # fmt: skip
            # Jitter spreads many organisations' checks over an hour instead of one burst.
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=req.every_hours))], jitter=timedelta(minutes=60)),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        )
        try:
            await self.client.create_schedule(sid, schedule, memo={"org_id": req.org_id})
            log.info("re-verification schedule created", org_id=req.org_id, schedule_id=sid)
        except ScheduleAlreadyRunningError:
            pass
        return sid

    @activity.defn
    async def delete_reverify_schedule(self, req: ReverifyInput) -> bool:
        """Remove the org's re-verification Schedule (offboarding). Already gone counts as done;
        returns whether it existed."""
        bind_subject(org_id=req.org_id)
        sid = reverify_schedule_id(req.org_id)
        try:
            await self.client.get_schedule_handle(sid).delete()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        log.info("re-verification schedule deleted", org_id=req.org_id, schedule_id=sid)
        return True
