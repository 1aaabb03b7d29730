"""``python -m bench.memory`` at its smallest: both sandbox modes run, each repetition in its own
process, and the figures are consistent with each other. No memory assertion (the figures are in
docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_bench_memory_smoke(tmp_path):
    out = tmp_path / "memory.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.memory",
            "--clusters",
            "30",
            "--reps",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert [run.get("error") for run in res["runs"]] == [None, None], res[
        "runs"
    ]  # (the child's stderr)
    assert set(res["kib_per_waiting_cluster"]) == {"isolated", "shared"}
    assert [x["mode"] for x in res["runs"]] == ["isolated", "shared"]
    for run in res["runs"]:
        assert "error" not in run, run
        # 30 clusters are within the allocator's noise: the figure may even be negative here.
        assert run["clusters"] == 30 and min(run["rss_mib_waiting"], run["rss_mib_before"]) > 0
        want = (run["rss_mib_waiting"] - run["rss_mib_before"]) * 1024 / 30
        # (the MiB figures are rounded to 0.1: up to 0.1 MiB over 30 clusters of difference)
        assert run["kib_per_waiting_cluster"] == pytest.approx(want, abs=0.1 * 1024 / 30 + 0.1)
