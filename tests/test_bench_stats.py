"""The benchmark's statistics helper (bench/stats.py): medians with min–max, every sample kept,
arms interleaved. Each check is also run against a planted defect (a summariser reporting the mean
or only the first sample, a runner doing A A … B B …) to show the check catches it."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import pytest

from bench import stats

# Skewed on purpose: one slow outlier (the shared machine's one-sided noise), first sample not the
# median, so a mean (2.0) and the first sample (1.4) both differ from the median (1.2).
SAMPLES = [1.4, 1.1, 1.2, 4.1, 1.2]


def check_summariser(summarise: Callable[[list[float]], dict[str, Any]]) -> None:
    s = summarise(SAMPLES)
    assert s == {
        "median": 1.2,
        "min": 1.1,
        "max": 4.1,
        "n": 5,
        "samples": [1.4, 1.1, 1.2, 4.1, 1.2],
    }


def test_summary_is_median_with_min_max_and_keeps_every_sample() -> None:
    check_summariser(stats.summarise)


def _mean_summariser(samples: list[float]) -> dict[str, Any]:
    s = stats.summarise(samples)
    return {**s, "median": round(statistics.mean(samples), 3)}


def _first_sample_summariser(samples: list[float]) -> dict[str, Any]:
    return stats.summarise(samples[:1])


@pytest.mark.parametrize("defect", [_mean_summariser, _first_sample_summariser])
def test_twin_defective_summariser_is_caught(defect: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(AssertionError):
        check_summariser(defect)


def test_ratios_are_per_repetition() -> None:
    assert stats.ratios([2.0, 3.0, 9.0], [1.0, 2.0, 3.0]) == [2.0, 1.5, 3.0]
    with pytest.raises(ValueError, match="arms differ in length: 2 vs 1"):
        stats.ratios([1.0, 2.0], [1.0])


def test_unfinished_repetitions_are_counted_not_dropped() -> None:
    assert stats.summarise([2.0, None, 1.0, 3.0]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "n": 3,
        "samples": [2.0, None, 1.0, 3.0],
        "failed": 1,
    }
    assert stats.ratios([2.0, None, 3.0], [1.0, 1.0, None]) == [2.0, None, None]
    assert stats.spread(stats.summarise([2.0, None])) == "2.0 (2.0–2.0, n=1, 1 failed)"


def test_spread_reads_median_then_range() -> None:
    assert stats.spread(stats.summarise(SAMPLES), "x") == "1.2x (1.1–4.1, n=5)"


def test_empty_samples_refused() -> None:
    with pytest.raises(ValueError, match="no samples"):
        stats.summarise([])


async def _sequential(arms: dict[str, Any], reps: int) -> dict[str, list[float]]:
    """Planted defect: all repetitions of one arm, then the next (A A A B B B)."""
    out: dict[str, list[float]] = {}
    for name, arm in arms.items():
        out[name] = [await arm(i) for i in range(reps)]
    return out


async def check_runner(runner: Callable[..., Any]) -> None:
    order: list[str] = []

    def arm(name: str) -> Callable[[int], Any]:
        async def run(i: int) -> float:
            order.append(f"{name}{i}")
            return float(i)

        return run

    out = await runner({"A": arm("A"), "B": arm("B")}, 3)
    assert order == ["A0", "B0", "A1", "B1", "A2", "B2"]
    assert out == {"A": [0.0, 1.0, 2.0], "B": [0.0, 1.0, 2.0]}


async def test_arms_are_interleaved() -> None:
    await check_runner(stats.interleaved)


async def test_twin_sequential_runner_is_caught() -> None:
    with pytest.raises(AssertionError):
        await check_runner(_sequential)
