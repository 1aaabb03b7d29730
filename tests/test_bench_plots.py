"""The benchmark's plots (bench/plots.py) are drawn from its JSON: one PNG per scenario that has
results, none for a scenario that failed or did not run. matplotlib is the optional ``bench``
extra (pinned in requirements.lock): absent on a developer machine the test skips, saying so; in
CI it fails (tests/support/requirements.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.requirements import require_module

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "bench-runs"
PNG = b"\x89PNG\r\n\x1a\n"


def test_every_scenario_with_results_is_drawn(tmp_path: Path) -> None:
    require_module("matplotlib", "the optional bench extra draws the benchmark's plots")
    from bench.plots import render

    runs = [RUNS / "2026-11-26-small.json", RUNS / "2026-11-26-waiting-1000.json"]
    made = render(runs, tmp_path)
    assert [p.name for p in made] == ["throughput.png", "waiting.png", "scaleout.png"]
    for p in made:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, p


def test_twin_a_failed_scenario_draws_nothing(tmp_path: Path) -> None:
    """A failed scenario must not yield a plot that looks like a result."""
    require_module("matplotlib", "the optional bench extra draws the benchmark's plots")
    from bench.plots import render

    result = json.loads((RUNS / "2026-11-26-small.json").read_text())
    result["scaleout"] = {"error": "RuntimeError: worker process did not start"}
    result["throughput"] = [{"error": "TimeoutError"}]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(result))
    assert render([broken], tmp_path / "out") == []
