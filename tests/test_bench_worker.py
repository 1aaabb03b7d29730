"""The benchmark measures the worker as worker.py builds it: the production interceptor (the
background heartbeats of activities/heartbeat.py) is kept when a scenario adds its recorder, and
the collector is tuned once per process (worker.tune_gc)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import worker
from activities.heartbeat import HeartbeatInterceptor
from bench.harness import Bench


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(worker, "build_worker", lambda *a, **kw: calls.append(kw) or object())
    tuned: list[int] = []
    monkeypatch.setattr(worker, "tune_gc", tuned.append)  # never freeze the test process
    calls.append({"tuned": tuned})
    return calls


def bench() -> Bench:
    return Bench(args=None, client=object(), settings=SimpleNamespace(gc_young_threshold=10_000))


def test_a_scenario_s_recorder_is_added_to_the_worker_s_own_interceptor(built):
    recorder = object()
    b = bench()
    b.worker("q", "default", [], interceptors=[recorder])
    b.worker("q2", "default", [])
    first, second = built[1]["interceptors"], built[2]["interceptors"]
    assert isinstance(first[0], HeartbeatInterceptor) and first[1:] == [recorder]
    assert len(second) == 1 and isinstance(second[0], HeartbeatInterceptor)
    assert built[0]["tuned"] == [10_000]  # once per process, not per worker


def test_twin_a_scenario_s_list_replacing_the_worker_s_own_is_caught(built, monkeypatch):
    # The form before session 8: ``interceptors=interceptors or []`` replaced the worker's own.
    recorder = object()
    real = worker.build_worker
    monkeypatch.setattr(
        worker, "build_worker", lambda *a, **kw: real(*a, **{**kw, "interceptors": [recorder]})
    )
    bench().worker("q", "default", [], interceptors=[recorder])
    assert not any(isinstance(i, HeartbeatInterceptor) for i in built[1]["interceptors"])
