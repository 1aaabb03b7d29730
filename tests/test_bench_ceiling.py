"""The throughput ceiling has the lifecycle's shape (bench/noop.py, bench/scenarios/throughput.py):
the no-op workflow runs the steps read from a real lifecycle's history -- activities and local
activities, in order -- so the ratio compares like with like once registry calls are local
activities (issue 23). Twin: the former ceiling, given only activity counts, has no local
activity and so a different shape than the lifecycle it stands for."""

from __future__ import annotations

from bench.noop import NoopInput, NoopLifecycle, bench_noop
from bench.scenarios.throughput import lifecycle_shape
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
