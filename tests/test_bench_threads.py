"""What the throughput scenario says of the activities' own work (bench/cpu.py,
bench/scenarios/throughput.py): the CPU of one worker's activity threads, and per repetition the
CPU ratio to the ceiling, as measured and with those threads costing what the ceiling's no-op
activities cost. Each check is also run against a planted defect (a reader taking the whole
process, another executor whose name merely starts alike, whole clock ticks that lose short
bursts, threads started meanwhile left out; a ratio dropping the ceiling's own activities, leaving
out moto's server, or pooling the repetitions) to show the check catches it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bench.cpu import cpu_since, thread_cpu_seconds
from bench.harness import cpu_seconds
from bench.scenarios.throughput import cpu_ratios

BURN = 0.3  # CPU seconds each executor's thread spends
BURST, THREADS = 0.005, 8  # an activity's few milliseconds, on threads started meanwhile

Reader = Callable[[str], dict[int, float]]
Since = Callable[[dict[int, float], dict[int, float]], float]


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def check_one_executor(read: Reader, since: Since) -> None:
    """One executor burns BURN seconds, then another whose prefix starts with the first's: only
    the first is counted."""
    with (
        ThreadPoolExecutor(1, thread_name_prefix="bh-burn") as mine,
        ThreadPoolExecutor(1, thread_name_prefix="bh-burn-other") as other,
    ):
        for ex in (mine, other):  # both threads exist before the first reading
            ex.submit(lambda: None).result()
        before = read("bh-burn")
        mine.submit(_burn, BURN).result()
        other.submit(_burn, BURN).result()
        spent = since(before, read("bh-burn"))
    assert BURN - 0.05 <= spent <= BURN + 0.1, spent


def check_new_threads(read: Reader, since: Since) -> None:
    """THREADS threads started after the first reading each burn BURST: all of it is counted
    (within a quarter), as the activity threads an executor starts during a repetition."""
    start = threading.Barrier(THREADS)

    def burst() -> None:
        start.wait()  # one thread per task: none is idle when the next task comes
        _burn(BURST)

    with ThreadPoolExecutor(THREADS, thread_name_prefix="bh-burst") as ex:
        before = read("bh-burst")
        for f in [ex.submit(burst) for _ in range(THREADS)]:
            f.result()
        spent = since(before, read("bh-burst"))
    assert 0.75 * BURST * THREADS <= spent <= 1.4 * BURST * THREADS, spent


def test_the_activity_threads_of_one_executor_are_counted_and_no_other() -> None:
    check_one_executor(thread_cpu_seconds, cpu_since)


def test_threads_started_meanwhile_count_their_few_milliseconds() -> None:
    check_new_threads(thread_cpu_seconds, cpu_since)


def _whole_process(prefix: str) -> dict[int, float]:
    return {0: cpu_seconds(os.getpid())}


def _named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.native_id and t.name.startswith(prefix)]


def _loose_prefix(prefix: str) -> dict[int, float]:
    """Names matched by ``startswith(prefix)``, without the executor's ``_``."""
    out = {}
    for t in _named(prefix):
        ns = Path(f"/proc/self/task/{t.native_id}/schedstat").read_text().split()[0]
        out[t.native_id or 0] = int(ns) / 1e9
    return out


def _clock_ticks(prefix: str) -> dict[int, float]:
    """The first version: user + system time from ``/proc/self/task/<tid>/stat``, whole ticks."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in _named(f"{prefix}_"):
        fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1]
        out[t.native_id or 0] = (int(fields.split()[11]) + int(fields.split()[12])) / tick
    return out


def _since_ignoring_new_threads(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[tid] - v for tid, v in before.items() if tid in after)


@pytest.mark.parametrize(
    ("read", "since", "check"),
    [
        (_whole_process, cpu_since, check_one_executor),
        (_loose_prefix, cpu_since, check_one_executor),
        (_clock_ticks, cpu_since, check_new_threads),
        (thread_cpu_seconds, _since_ignoring_new_threads, check_new_threads),
    ],
)
def test_twin_a_reader_counting_other_threads_or_losing_short_ones_is_caught(
    read: Reader, since: Since, check: Callable[[Reader, Since], None]
) -> None:
    with pytest.raises(AssertionError):
        check(read, since)


CEILING = {"bench_process": 60.0, "dev_server": 40.0, "activity_threads": 2.0}
FAKE = {"bench_process": 90.0, "dev_server": 60.0, "activity_threads": 30.0}
# Three repetitions: the fake's second did not finish; moto ran (its server's CPU counted).
CPU: dict[str, list[dict[str, float] | None]] = {
    "ceiling": [CEILING, CEILING, {**CEILING, "dev_server": 50.0}],
    "fake": [FAKE, None, {**FAKE, "bench_process": 100.0}],
    "moto": [{**FAKE, "moto_server": 100.0}, {**FAKE, "moto_server": 100.0}, None],
}


def check_ratios(ratios_of: Callable[..., dict[str, Any]]) -> None:
    got = ratios_of(CPU, ("fake", "moto"))
    fake = [100 / 150, None, 110 / 160]
    assert got["fake_cpu_ratio_to_ceiling"]["samples"] == [
        None if r is None else round(r, 3) for r in fake
    ]
    free = [100 / (150 - 30 + 2), None, 110 / (160 - 30 + 2)]
    assert got["fake_cpu_ratio_if_activities_were_noops"]["samples"] == [
        None if r is None else round(r, 3) for r in free
    ]
    assert got["fake_cpu_ratio_to_ceiling"]["n"] == 2
    assert got["moto_cpu_ratio_to_ceiling"]["samples"] == [0.4, 0.4, None]  # 100 / 250


def test_cpu_ratios_are_per_repetition_and_count_every_process() -> None:
    check_ratios(cpu_ratios)


def _without_the_ceiling_s_activities(cpu: Any, arms: Any) -> dict[str, Any]:
    zero = {
        k: [r and ({**r, "activity_threads": 0.0} if k == "ceiling" else r) for r in v]
        for k, v in cpu.items()
    }
    return cpu_ratios(zero, arms)


def _two_processes_only(cpu: Any, arms: Any) -> dict[str, Any]:
    """The first version: the worker process and the dev server, whatever else ran."""
    kept = ("bench_process", "dev_server", "activity_threads")
    return cpu_ratios({k: [r and {p: r[p] for p in kept} for r in v] for k, v in cpu.items()}, arms)


def _pooled(cpu: Any, arms: Any) -> dict[str, Any]:
    """One ratio of the repetitions' means, repeated: no spread of its own."""
    got = cpu_ratios(cpu, arms)
    for v in got.values():
        done = [s for s in v["samples"] if s is not None]
        v["samples"] = [
            None if s is None else round(sum(done) / len(done), 3) for s in v["samples"]
        ]
    return got


@pytest.mark.parametrize(
    "defect", [_without_the_ceiling_s_activities, _two_processes_only, _pooled]
)
def test_twin_a_defective_ratio_is_caught(defect: Callable[..., Any]) -> None:
    with pytest.raises(AssertionError):
        check_ratios(defect)
