"""The benchmark at its smallest size, as a smoke test: it runs end to end and its figures are
consistent with each other. No timing assertions (figures are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_bench_ceiling import LIFECYCLE

ROOT = Path(__file__).resolve().parent.parent


def errors(out: Path) -> str:
    """The scenarios' error messages from the result JSON (the log tails can hide them)."""
    try:
        res = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        return f"no result JSON ({e})\n"
    found = [f"{k}: {v['error']}" for k, v in res.items() if isinstance(v, dict) and "error" in v]
    return "scenario errors:\n" + "\n".join(found) + "\n"


@pytest.mark.integration
def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, errors(out) + r.stdout[-3000:] + r.stderr[-3000:]
    assert "overhead: Bridgehead / plain script" in r.stdout
    res = json.loads(out.read_text())
    o = res["overhead"]
    assert o["aws_activity_calls_replayed"] >= 10 and o["ratio"]["median"] > 0
    assert o["ratio"]["n"] == res["reps"] == len(o["ratio"]["samples"])
    # moto with AWS's latency: both arms ran, the script as many AWS calls as on moto alone
    lat = o["aws_latency"]
    assert lat["aws_activity_calls_replayed"] == o["aws_activity_calls_replayed"], lat
    assert lat["ratio"]["n"] == lat["script_seconds"]["n"] == res["reps"], lat
    # padded to AWS's latency (about 2.5 s of draws more than moto's answers), the script waits
    assert lat["script_seconds"]["median"] > o["script_seconds"]["median"] + 1.0, lat
    for t in res["throughput"]:
        assert set(t["seconds"]) == {"ceiling", "commands", "fake", "moto"}, t
        assert all(s["n"] == res["reps"] for s in t["seconds"].values()), t
        assert t["activities_before_running"] >= 4 and t["activities_after_delete"] >= 2
        # the ceiling ran the lifecycle's own steps, local activities included (test_bench_ceiling)
        assert (t["steps"]["before"], t["steps"]["after"]) == LIFECYCLE, t["steps"]
        # the command ceiling replayed the lifecycle's commands (the run checks their signature,
        # bench.scenarios.throughput.same_commands): its steps, with patch and upserts around them
        cmd = t["command_script"]
        assert cmd["before"].replace("P", "").replace("U", "") == LIFECYCLE[0], cmd
        assert cmd["after"].replace("U", "") == LIFECYCLE[1], cmd
        assert cmd["before"].count("U") + cmd["after"].count("U") >= 5, cmd  # the statuses
        assert t["fake_ratio_to_commands"]["n"] == res["reps"], t
        cpu = t["cpu_ms_per_lifecycle"]
        assert set(cpu) == {"ceiling", "commands", "fake", "moto"}, cpu
        assert all(c["bench_process"] > 0 and c["dev_server"] > 0 for c in cpu.values()), cpu
        # the activities' own work shows in the fake arm's activity threads, not the ceiling's
        # no-op ones (tests/test_bench_threads.py); moto's server is counted in moto's arm
        assert cpu["fake"]["activity_threads"] > cpu["ceiling"]["activity_threads"], cpu
        assert cpu["moto"]["moto_server"] > 0, cpu
        for key in ("fake_cpu_ratio_to_ceiling", "fake_cpu_ratio_if_activities_were_noops"):
            assert t[key]["n"] == res["reps"], t
        # every lifecycle on the fake (warm-up + repetitions) created its stack there
        assert t["fake_calls"]["cloudformation:CreateStack"] == t["clusters"] * res["reps"] + 1
    w = res["waiting"]
    assert [r["clusters_waiting"] for r in w["by_cache_size"]] == [20]
    assert w["history_events_per_cluster_now"] > 0
    # The bound of workflows/_waiting.py: EVENTS_PER_CHECK per look of the safety net in the hour
    # (no stack event in this benchmark), over about 40 events of set-up.
    from workflows._waiting import EVENTS_PER_CHECK, safety_net_offsets

    looks = sum(1 for at in safety_net_offsets() if at.total_seconds() <= 3600)
    assert w["history_events_per_cluster_after_1h"] <= EVENTS_PER_CHECK * looks + 40
    b = res["billing"]
    assert b["node_minutes_ledger"] == b["node_minutes_expected"]
    assert b["actions_per_cluster_hour"] <= 4
    s = res["scaleout"]
    assert s["clusters_per_second"]["2"]["n"] == res["reps"]
    assert all("load_average_after" in res[k] for k in ("overhead", "waiting", "scaleout"))


@pytest.mark.integration
def test_bench_waiting_with_the_worker_in_its_own_process(tmp_path):
    """``--wait-process``: the waiting worker runs in a process of its own, whose memory, CPU and
    activity slots the figures then describe (not the benchmark process's)."""
    out = tmp_path / "wait.json"
    args = ["--only", "waiting", "--waiting", "12", "--wait-caches", "6", "--wait-slots", "16"]
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "smoke", *args, "--wait-seconds", "4"]
        + ["--hour-sample", "1", "--wait-process", "--wait-settle", "2", "--wait-sandbox", "shared"]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, errors(out) + r.stdout[-3000:] + r.stderr[-3000:]
    (w,) = json.loads(out.read_text())["waiting"]["by_cache_size"]
    assert w["worker"] == "own process" and w["clusters_waiting"] == 12
    assert w["workflow_sandbox"] == "shared"  # as the worker process reports it
    assert (w["max_cached_workflows"], w["max_concurrent_activities"]) == (6, 16)
    # The worker alone: it starts well below the benchmark process (stack client, moto data).
    assert 0 < w["worker_rss_mib_before"] < w["worker_rss_mib_waiting"]
    assert 3.5 <= w["sampled_seconds"] <= 6
    # ``--wait-settle``: the window opened that long (by the clock) after the last cluster waited.
    assert 2 <= w["seconds_settled_before_window"] < 5
    assert 0 <= w["slots_busy_fraction"] <= 1 and w["activities_in_flight_max"] <= 16
    assert w["history_events_per_cluster_now"] > 0
