"""Schedules follow their settings (issue #22): the drop-box watcher and the re-verification
Schedules are brought up to date when created again with other settings, instead of the first
version living forever; an operator's pause is kept."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from activities.schedules import dropbox_schedule, ensure_schedule, reverify_schedule
from bridgehead.settings import get_settings

pytestmark = pytest.mark.integration


async def interval(client, sid: str) -> timedelta:  # type: ignore[no-untyped-def]
    desc = await client.get_schedule_handle(sid).describe()
    return desc.schedule.spec.intervals[0].every


async def test_a_schedule_follows_changed_settings_and_keeps_a_pause(client, stack):
    sid = f"test-dropbox-{uuid.uuid4().hex[:6]}"
    settings = get_settings()
    assert (
        await ensure_schedule(
            client, sid, dropbox_schedule(settings.model_copy(update={"dropbox_every_seconds": 30}))
        )
        == "created"
    )
    await client.get_schedule_handle(sid).pause(note="operator pause")
    assert (
        await ensure_schedule(
            client, sid, dropbox_schedule(settings.model_copy(update={"dropbox_every_seconds": 90}))
        )
        == "updated"
    )
    assert await interval(client, sid) == timedelta(seconds=90)
    desc = await client.get_schedule_handle(sid).describe()
    assert desc.schedule.state.paused and desc.schedule.state.note == "operator pause"
    rid = f"test-reverify-{uuid.uuid4().hex[:6]}"
    await ensure_schedule(client, rid, reverify_schedule("acme", 24, settings))
    await ensure_schedule(client, rid, reverify_schedule("acme", 6, settings))
    assert await interval(client, rid) == timedelta(hours=6)
    for s in (sid, rid):
        await client.get_schedule_handle(s).delete()


async def test_twin_create_only_keeps_the_first_interval(client, stack):
    """Planted defect: the old create-only behaviour leaves the first interval in place, which the
    test above would catch."""
    from temporalio.client import ScheduleAlreadyRunningError

    sid = f"test-createonly-{uuid.uuid4().hex[:6]}"
    settings = get_settings()
    await client.create_schedule(
        sid, dropbox_schedule(settings.model_copy(update={"dropbox_every_seconds": 30}))
    )
    with pytest.raises(ScheduleAlreadyRunningError):
        await client.create_schedule(
            sid, dropbox_schedule(settings.model_copy(update={"dropbox_every_seconds": 90}))
        )
    assert await interval(client, sid) == timedelta(seconds=30)
    await client.get_schedule_handle(sid).delete()


async def test_worker_start_check_names_missing_search_attributes(client, stack):
    from worker import missing_search_attributes, search_attribute_help

    assert await missing_search_attributes(client) == []
    missing = await missing_search_attributes(client, ("OrgId", "NoSuchAttribute"))
    assert missing == ["NoSuchAttribute"]
    text = search_attribute_help(missing, "default")
    assert (
        "--search-attribute NoSuchAttribute=Keyword" in text
        and "temporal operator search-attribute create" in text
    )
    assert "tcld namespace search-attributes add" in text
