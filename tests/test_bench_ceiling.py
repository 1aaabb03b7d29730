"""The throughput ceiling has the lifecycle's shape (bench/noop.py, bench/scenarios/throughput.py):
the no-op workflow runs the steps read from a real lifecycle's history -- activities and local
activities, in order -- so the ratio compares like with like once registry calls are local
activities (issue 23). Twin: the former ceiling, given only activity counts, has no local
activity and so a different shape than the lifecycle it stands for."""

from __future__ import annotations

from pathlib import Path

from bench.commands import command_script, command_signature, payload_sizes
from bench.noop import NoopInput, NoopLifecycle, bench_echo, bench_noop
from bench.scenarios.throughput import lifecycle_shape, lifecycle_steps
from tests.support.timeskip import serve

#: A lifecycle's steps as the current workflows record them (validate, quota, register, create,
#: look, register, notify | register, delete, look, register, notify).
LIFECYCLE = ("LALAALA", "LAALA")


async def ceiling_shape(env, inp: NoopInput) -> tuple[str, str]:
    async with serve(env, [bench_noop], workflows=[NoopLifecycle]) as w:
        h = await w.start(NoopLifecycle.run, inp, id=f"noop-{inp.steps_before or inp.before}")
        while (await h.query(NoopLifecycle.state)) != "RUNNING":
            await env.sleep(1)
        await h.signal(NoopLifecycle.delete)
        assert await h.result() == "DELETED"
        return await lifecycle_shape(h)


async def test_the_ceiling_runs_the_lifecycle_s_steps_in_order(ts_env):
    before, after = LIFECYCLE
    inp = NoopInput(before=0, after=0, steps_before=before, steps_after=after)
    assert await ceiling_shape(ts_env, inp) == LIFECYCLE


async def test_twin_counts_alone_give_a_ceiling_without_local_activities(ts_env):
    before, after = LIFECYCLE
    inp = NoopInput(before=before.count("A"), after=after.count("A"))
    assert await ceiling_shape(ts_env, inp) == ("AAAA", "AAA") != LIFECYCLE


# --- the command ceiling --------------------------------------------------------------------------
#: A lifecycle created, RUNNING and deleted, recorded on the dev server by the current workflows
#: (the replay corpus): its stack took three looks, so its commands include timers.
RECORDED = "ClusterLifecycle--lifecycle-baseline"


def recorded_events() -> list:
    from temporalio.client import WorkflowHistory

    base = Path(__file__).parent / "histories" / RECORDED
    history = WorkflowHistory.from_json(
        base.with_suffix(".id").read_text().strip(), base.with_suffix(".json").read_text()
    )
    return list(history.events)


async def ceiling_events(env, inp: NoopInput, wf_id: str) -> list:
    async with serve(env, [bench_noop, bench_echo], workflows=[NoopLifecycle]) as w:
        h = await w.start(NoopLifecycle.run, inp, id=wf_id)
        while (await h.query(NoopLifecycle.state)) != "RUNNING":
            await env.sleep(1)
        await h.signal(NoopLifecycle.delete)
        assert await h.result() == "DELETED"
        return list((await h.fetch_history()).events)


async def test_the_command_ceiling_issues_the_lifecycle_s_commands(ts_env):
    events = recorded_events()
    before, after = command_script(events)
    kinds = "".join(s.kind for s in before) + "|" + "".join(s.kind for s in after)
    assert kinds == "PULALUAATATATAULA|ULAALAU", kinds  # patch, upserts, timers, steps
    assert {s.heartbeat_s for s in before + after if s.kind == "A"} == {10.0}
    ran = await ceiling_events(
        ts_env, NoopInput(before=0, after=0, script_before=before, script_after=after), "cmd-1"
    )
    assert command_signature(ran) == command_signature(events)
    assert command_signature(ran)[4][4]["maximum_attempts"] > 0  # retry policies compared
    # each payload of the same size: results exactly, inputs within an Echo's frame
    ours, theirs = payload_sizes(ran), payload_sizes(events)
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    for (kind, a), (_, b) in zip(ours, theirs, strict=True):
        assert (a == b) if kind != "input" else (b <= a <= b + 20), (kind, a, b)


async def test_twin_the_step_ceiling_lacks_the_lifecycle_s_upserts_and_activity_options(ts_env):
    events = recorded_events()
    before, after = lifecycle_steps(events)
    ran = await ceiling_events(
        ts_env, NoopInput(before=0, after=0, steps_before=before, steps_after=after), "cmd-2"
    )
    ours, theirs = command_signature(ran), command_signature(events)
    assert [s for s in ours if s[0] == "upsert"] != [s for s in theirs if s[0] == "upsert"]
    assert {s[3] for s in ours if s[0] == "activity"} == {0}  # no heartbeat timeout
    assert ours != theirs


async def test_twin_a_script_that_drops_heartbeat_timeouts_is_caught(ts_env):
    events = recorded_events()
    before, after = command_script(events)
    drop = [s.model_copy(update={"heartbeat_s": None}) for s in before]
    ran = await ceiling_events(
        ts_env, NoopInput(before=0, after=0, script_before=drop, script_after=after), "cmd-3"
    )
    assert command_signature(ran) != command_signature(events)


def test_a_history_with_a_command_the_ceiling_does_not_replay_is_refused():
    import pytest
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import HistoryEvent

    from bench.commands import NotReplayable

    events = recorded_events()
    command_script(events)  # the lifecycle as recorded: every command replayable
    cancelled = HistoryEvent(event_id=999, event_type=EventType.EVENT_TYPE_TIMER_CANCELED)
    with pytest.raises(NotReplayable, match="TIMER_CANCELED"):
        command_script([*events[:10], cancelled, *events[10:]])
