"""Repetitions and their spread: the one place where the benchmark interleaves arms and summarises.

Rules (issue 23): every ratio comes from at least :data:`MIN_REPS` repetitions per arm, run
interleaved (A B A B …, so a burst of load from another process hits both arms alike), and is
reported as the **median with min–max**; the JSON keeps every sample. The ratio of two arms is
computed per repetition (A_i / B_i, the two runs closest in time) and then summarised, rather than
as the quotient of two medians, so the spread shown is the spread of the ratio itself.

Why the median: on a shared 2-core machine the noise is one-sided (another process steals the CPU,
a run gets slower, never faster), so a mean is dragged by the unlucky run and the first sample is
just luck. The median of five is robust to two bad runs; min–max shows how far apart runs were.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

MIN_REPS = 5


def summarise(samples: Sequence[float | None], digits: int = 3) -> dict[str, Any]:
    """``{"median", "min", "max", "n", "samples"}`` of ``samples`` (every sample kept, in order).

    A ``None`` sample is a repetition that did not finish (see :func:`interleaved`): it stays in
    ``samples``, is counted in ``"failed"`` (present only then) and left out of the statistics, so
    ``n`` is the number of repetitions the figures stand on."""
    values = [float(s) for s in samples if s is not None]
    if not values:
        raise ValueError("no samples to summarise")
    out: dict[str, Any] = {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
        "samples": [None if s is None else round(float(s), digits) for s in samples],
    }
    if len(values) < len(samples):
        out["failed"] = len(samples) - len(values)
    return out


def ratios(
    numerators: Sequence[float | None], denominators: Sequence[float | None]
) -> list[float | None]:
    """Per-repetition ratios ``a_i / b_i`` of two interleaved arms (same length); ``None`` where
    either repetition did not finish."""
    if len(numerators) != len(denominators):
        raise ValueError(f"arms differ in length: {len(numerators)} vs {len(denominators)}")
    return [
        None if a is None or b is None else a / b
        for a, b in zip(numerators, denominators, strict=True)
    ]


def spread(s: dict[str, Any], unit: str = "") -> str:
    """``1.23 (1.10–1.41, n=5)``: how a summary reads in tables and docs (``, 1 failed`` added
    when repetitions did not finish)."""
    failed = f", {s['failed']} failed" if s.get("failed") else ""
    return f"{s['median']}{unit} ({s['min']}–{s['max']}, n={s['n']}{failed})"


async def interleaved(
    arms: dict[str, Callable[[int], Awaitable[float | None]]], reps: int
) -> dict[str, list[float | None]]:
    """Run each arm ``reps`` times in the order A B … A B …; each call gets its repetition index
    and returns one sample, or ``None`` when that repetition did not finish (the arm decides, e.g.
    a deadline; it is reported as failed, never silently dropped). Returns the samples per arm, in
    the order they were taken."""
    if reps < 1:
        raise ValueError("at least one repetition")
    out: dict[str, list[float | None]] = {name: [] for name in arms}
    for i in range(reps):
        for name, arm in arms.items():
            out[name].append(await arm(i))
    return out
