"""Temporal Schedules the workflows ask for (a workflow cannot create a Schedule itself)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from bridgehead import ids
from bridgehead.ids import reverify_schedule_id
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import DropboxWatchInput, ReverifyInput
from bridgehead.settings import Settings

log = get_logger(__name__)


def reverify_schedule(org_id: str, every_hours: int, settings: Settings) -> Schedule:
    """The organisation's re-verification Schedule (``org-{org_id}-reverify``)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "ReverifyOrganization",
            ReverifyInput(org_id=org_id, every_hours=every_hours),
            id=reverify_schedule_id(org_id),
            task_queue=settings.task_queue,
            static_summary=f"daily re-verification of {org_id}",
        ),
        # Jitter spreads many organisations' checks over an hour instead of one burst.
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(hours=every_hours))],
            jitter=timedelta(minutes=60),
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def dropbox_watch_every(settings: Settings, events: bool) -> timedelta:
    """How often ``dropbox-watch`` looks: ``dropbox_every_seconds`` while it alone finds requests,
    ``dropbox_safety_net_seconds`` once the inbox's S3 events start them (it is then only the
    safety net for an event that never arrived)."""
    seconds = settings.dropbox_safety_net_seconds if events else settings.dropbox_every_seconds
    return timedelta(seconds=seconds)


def dropbox_schedule(settings: Settings, events: bool = False) -> Schedule:
    """The drop-box watcher's Schedule (``dropbox-watch``), every :func:`dropbox_watch_every`."""
    action = ScheduleActionStartWorkflow(
        "DropboxWatch",
        DropboxWatchInput(bucket=settings.inbox_bucket),
        id=ids.DROPBOX_WATCH_SCHEDULE,
        task_queue=settings.task_queue,
        static_summary="look for drop-box requests",
    )
    every = dropbox_watch_every(settings, events)
    return Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def sync_dropbox_schedule(client: Client, settings: Settings, events: bool) -> str | None:
    """At worker start: bring an existing ``dropbox-watch`` to the settings (a changed interval,
    or events switched on or off, takes effect without running setup again); an inbox that was
    never set up gets no Schedule. Returns ``updated`` or None (no Schedule)."""
    sid = ids.DROPBOX_WATCH_SCHEDULE
    try:
        await client.get_schedule_handle(sid).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    outcome = await ensure_schedule(client, sid, dropbox_schedule(settings, events))
    every = dropbox_watch_every(settings, events).total_seconds()
    log.info(f"drop-box schedule {outcome}", schedule_id=sid, every_seconds=every, events=events)
    return outcome


async def ensure_schedule(
    client: Client, schedule_id: str, schedule: Schedule, memo: dict[str, Any] | None = None
) -> str:
    """Create the Schedule, or bring an existing one to ``schedule`` (its spec, action and policy
    follow the settings of the worker or starter that runs this: a changed interval, task queue
    or input takes effect instead of the first version living forever). Idempotent."""
    try:
        await client.create_schedule(schedule_id, schedule, memo=memo)
        log.info("schedule created", schedule_id=schedule_id)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # Keep the run state (paused, notes) the operator may have set; replace what we own.
        return ScheduleUpdate(
            schedule=Schedule(
                action=schedule.action,
                spec=schedule.spec,
                policy=schedule.policy,
                state=current.description.schedule.state,
            )
        )

    await client.get_schedule_handle(schedule_id).update(update)
    return "updated"


class ScheduleActivities:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    @activity.defn
    async def ensure_reverify_schedule(self, req: ReverifyInput) -> str:
        """Create the org's daily re-verification Schedule, or bring an existing one up to date."""
        bind_subject(org_id=req.org_id)
        sid = reverify_schedule_id(req.org_id)
        outcome = await ensure_schedule(
            self.client,
            sid,
            reverify_schedule(req.org_id, req.every_hours, self.settings),
            memo={"org_id": req.org_id},
        )
        log.info(f"re-verification schedule {outcome}", org_id=req.org_id, schedule_id=sid)
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
