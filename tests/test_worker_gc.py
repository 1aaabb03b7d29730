"""The worker's garbage collector (``worker.tune_gc``, setting ``gc_young_threshold``).

Claim (docs/benchmarks.md, session 8): once built, the worker freezes what is alive, so no later
full collection walks it; CPython's thresholds are kept unless ``gc_young_threshold`` is set, and
then the young generation is collected that much less often. Each check runs in a fresh
interpreter: the collector's state is per process."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import gc, json, sys
    import worker
    from bridgehead.settings import Settings

    if sys.argv[1] != "untouched":
        worker.tune_gc(int(sys.argv[1]))
    default = Settings.model_fields["gc_young_threshold"].default
    walked = any(o is worker.build_worker for o in gc.get_objects())
    before = gc.get_stats()[0]["collections"]
    kept = [[i] for i in range(100_000)]  # tracked objects that survive, as a worker's cache does
    young = gc.get_stats()[0]["collections"] - before
    print(json.dumps({"walked": walked, "young": young, "threshold": gc.get_threshold(),
                      "frozen": gc.get_freeze_count(), "default": default}))
    """
)


def probe(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_worker_does_not_walk_its_start_up_heap_and_keeps_cpython_s_thresholds():
    got = probe("0")
    assert got["default"] == 0
    # The worker's own code, alive since start-up, is out of every generation a collection walks.
    assert got["walked"] is False
    assert got["frozen"] > 50_000, got
    assert got["threshold"] == [700, 10, 10]


def test_a_young_threshold_set_collects_the_young_generation_that_much_less_often():
    got = probe("10000")
    assert got["walked"] is False
    assert got["threshold"][0] == 10_000
    # 100,000 surviving allocations: about ten young collections instead of about 140.
    assert got["young"] <= 12, got


def test_twin_an_untouched_collector_walks_the_start_up_heap_and_collects_the_young_often():
    got = probe("untouched")
    assert got["walked"] is True
    assert got["frozen"] == 0
    assert got["young"] >= 100, got


def calls_tune_gc_before_serving(fn_source: str) -> bool:
    """Whether ``tune_gc(...)`` is called in the function before its ``async with worker``."""
    tree = ast.parse(textwrap.dedent(fn_source))
    tuned_at = serving_at = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tune_gc":
            tuned_at = node.lineno if tuned_at is None else min(tuned_at, node.lineno)
        if isinstance(node, ast.AsyncWith):
            serving_at = node.lineno if serving_at is None else min(serving_at, node.lineno)
    return tuned_at is not None and serving_at is not None and tuned_at < serving_at


def test_the_worker_process_and_the_benchmark_s_worker_process_tune_before_serving():
    import worker
    from bench import workerproc

    assert calls_tune_gc_before_serving(inspect.getsource(worker.main))
    assert calls_tune_gc_before_serving(inspect.getsource(workerproc.main))


def test_twin_a_main_without_the_call_is_caught():
    import worker

    source = inspect.getsource(worker.main).replace("tune_gc(settings.gc_young_threshold)", "pass")
    assert not calls_tune_gc_before_serving(source)
