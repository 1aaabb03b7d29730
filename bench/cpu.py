"""CPU of a set of threads of this process: the activity threads of one arm's worker
(:func:`bench.harness.activity_threads_prefix`), read from the kernel's scheduler statistics."""

from __future__ import annotations

import threading
from pathlib import Path


def thread_cpu_seconds(prefix: str) -> dict[int, float]:
    """CPU seconds so far of each live thread of this process named ``{prefix}_{n}`` (an
    executor's threads), by native thread id (Linux).

    Read from ``/proc/self/task/<tid>/schedstat`` (nanoseconds on the CPU), not from ``stat``,
    whose user and system times are whole clock ticks (10 ms) rounded down per thread: activities
    are bursts of a few milliseconds spread over tens of threads, and a thread started within a
    repetition then read 0. Python's thread names are not the kernel's, so threads are matched
    through :func:`threading.enumerate`."""
    out: dict[int, float] = {}
    for t in threading.enumerate():
        if t.native_id is None or not t.name.startswith(f"{prefix}_"):
            continue
        try:
            ns = Path(f"/proc/self/task/{t.native_id}/schedstat").read_text().split()[0]
        except OSError:  # ended since enumerate()
            continue
        out[t.native_id] = int(ns) / 1e9
    return out


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the threads of ``after`` spent since ``before`` (a thread new since then counts
    from zero; one that ended in between is lost, which an executor's threads do not do)."""
    return sum(v - before.get(tid, 0.0) for tid, v in after.items())


#: The key of a repetition's CPU figures that is a part of the bench process's, not a process.
ACTIVITY_THREADS = "activity_threads"


def processes_total(per_lifecycle: dict[str, float]) -> float:
    """A repetition's CPU per lifecycle over every process it names (the activity threads are
    inside the bench process's figure, so they are not added again)."""
    return sum(v for k, v in per_lifecycle.items() if k != ACTIVITY_THREADS)
