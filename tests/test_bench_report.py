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


def test_a_failed_hour_sample_keeps_the_waiting_figures(monkeypatch):
    """The hour sample runs after 20 minutes of waiting at full size: its failure is reported
    beside the figures instead of replacing them."""
    import asyncio

    import bench.scenarios.throughput as throughput
    import bench.scenarios.waiting as waiting

    async def nothing(*a: object) -> None:
        return None

    async def once(*a: object) -> dict:
        return {"clusters_waiting": 5, "slots_busy_fraction": 0.01}

    async def broken(n: int) -> dict:
        raise RuntimeError("Completed workflow")

    monkeypatch.setattr(throughput, "ensure_org", nothing)
    monkeypatch.setattr(waiting, "wait_once", once)
    monkeypatch.setattr(waiting, "waiting_one_hour", broken)
    got = asyncio.run(waiting.waiting(None, 5, 1.0, 1, [5]))  # type: ignore[arg-type]
    assert got["clusters_waiting"] == 5 and got["by_cache_size"] == [await_free(once)]
    assert "Completed workflow" in got["hour_sample_error"]
    assert "failed" not in table({"waiting": got}).split("waiting: activity slots busy")[1][:40]


def await_free(fn: object) -> dict:
    import asyncio

    return asyncio.run(fn())  # type: ignore[operator]
