"""What the throughput scenario says of the activities' own work (bench/harness.py,
bench/scenarios/throughput.py): the CPU of one worker's activity threads, and the CPU ratio to the
ceiling if those activities cost what no-op activities cost. Each check is also run against a
planted defect (a reader taking the whole process, or another executor whose name merely starts
alike; a bound that drops the ceiling's own activities, or reads the worker process alone) to show
the check catches it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bench.harness import cpu_seconds, cpu_since, thread_cpu_seconds
from bench.scenarios.throughput import cpu_bounds

BURN = 0.3  # CPU seconds each executor's thread spends


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def check_reader(read: Callable[[str], dict[int, float]]) -> None:
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
        spent = cpu_since(before, read("bh-burn"))
    assert BURN - 0.05 <= spent <= BURN + 0.1, spent


def test_the_activity_threads_of_one_executor_are_counted_and_no_other() -> None:
    check_reader(thread_cpu_seconds)


def _whole_process(prefix: str) -> dict[int, float]:
    return {0: cpu_seconds(os.getpid())}


def _loose_prefix(prefix: str) -> dict[int, float]:
    """The reader matching names by ``startswith(prefix)``, without the executor's ``_``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in threading.enumerate():
        if t.native_id is not None and t.name.startswith(prefix):
            fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1]
            out[t.native_id] = (int(fields.split()[11]) + int(fields.split()[12])) / tick
    return out


@pytest.mark.parametrize("defect", [_whole_process, _loose_prefix])
def test_twin_a_reader_counting_other_threads_is_caught(defect: Callable[..., Any]) -> None:
    with pytest.raises(AssertionError):
        check_reader(defect)


CPU = {
    "ceiling": {"bench_process": 60.0, "dev_server": 40.0, "activity_threads": 2.0},
    "fake": {"bench_process": 90.0, "dev_server": 60.0, "activity_threads": 30.0},
}


def check_bounds(bounds: Callable[..., dict[str, float]]) -> None:
    got = bounds(CPU, ("fake", "moto"))  # moto not run: no figure for it
    assert got == {
        "fake_cpu_ratio_to_ceiling": round(100 / 150, 3),
        "fake_cpu_ratio_if_activities_were_noops": round(100 / (150 - 30 + 2), 3),
    }


def test_the_bound_takes_the_activities_work_out_of_the_arm_and_leaves_the_rest() -> None:
    check_bounds(cpu_bounds)


def _without_the_ceiling_s_activities(cpu: Any, arms: Any) -> dict[str, float]:
    zero = {k: {**v, "activity_threads": 0.0} if k == "ceiling" else v for k, v in cpu.items()}
    return cpu_bounds(zero, arms)


def _worker_process_only(cpu: Any, arms: Any) -> dict[str, float]:
    return cpu_bounds({k: {**v, "dev_server": 0.0} for k, v in cpu.items()}, arms)


@pytest.mark.parametrize("defect", [_without_the_ceiling_s_activities, _worker_process_only])
def test_twin_a_defective_bound_is_caught(defect: Callable[..., Any]) -> None:
    with pytest.raises(AssertionError):
        check_bounds(defect)
