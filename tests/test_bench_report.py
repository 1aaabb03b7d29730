"""The benchmark's table tells a scenario that was not selected (``--only``) from one that failed."""

from __future__ import annotations

from bench.report import table


def rows(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_a_scenario_not_run_reads_not_run_and_a_failed_one_failed():
    text = table({"waiting": {"error": "worker process did not start"}})
    assert rows(text, "billing:") and all("not run" in r for r in rows(text, "billing:"))
    assert not any("failed" in r for r in rows(text, "billing:"))
    assert rows(text, "waiting:") and all("failed" in r for r in rows(text, "waiting:"))
