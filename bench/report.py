"""The benchmark's table: one row per measure, from the result JSON (a failed scenario reads
"failed", one not selected "not run", the others still show)."""

from __future__ import annotations

from typing import Any

from bench.cpu import ACTIVITY_THREADS, processes_total
from bench.stats import spread


def table(result: dict[str, Any]) -> str:
    from collections import defaultdict

    def safe(d: Any) -> Any:
        if d is None:  # not selected (--only): says so instead of "failed"
            return defaultdict(lambda: "not run")
        return (
            defaultdict(lambda: "failed", d) if "error" not in d else defaultdict(lambda: "failed")
        )

    o, w, bl = (safe(result.get(k)) for k in ("overhead", "waiting", "billing"))
    rows = [
        (
            "overhead: Bridgehead / plain script",
            _spread(o["ratio"], "x"),
            f"{_spread(o['bridgehead_seconds'], ' s')} vs {_spread(o['script_seconds'], ' s')}, "
            f"{o['activities']} activities",
        ),
        (
            "overhead without the workflow sandbox",
            _spread(o.get("unsandboxed_ratio", "not run"), "x"),
            _spread(o.get("unsandboxed_seconds", "-"), " s"),
        ),
    ]
    lat = o.get("aws_latency") or {}
    rows.append(
        (
            "overhead with AWS's latency (moto padded)",
            _spread(lat.get("ratio", "not run"), "x"),
            f"{_spread(lat.get('bridgehead_seconds', '-'), ' s')} vs "
            f"{_spread(lat.get('script_seconds', '-'), ' s')}, "
            f"difference {_spread(lat.get('difference_seconds', '-'), ' s')}",
        )
    )
    for t in map(safe, result.get("throughput", [])):
        if "commands_ratio_to_ceiling" in t:
            rows.append(
                (
                    f"throughput [{t['tuning']}]: command ceiling / ceiling",
                    spread(t["commands_ratio_to_ceiling"]),
                    "no-op workflows replaying every command of a lifecycle (upserts, patch, "
                    f"activity options) against its steps alone; {spread(t['commands_per_second'], '/s')}",
                )
            )
        for arm in ("fake", "moto"):
            if f"{arm}_ratio_to_ceiling" not in t:
                continue
            rows.append(
                (
                    f"throughput [{t['tuning']}]: lifecycles on {arm} AWS / ceiling",
                    spread(t[f"{arm}_ratio_to_ceiling"]),
                    f"{t['clusters']} clusters; {spread(t[f'{arm}_per_second'], '/s')} vs "
                    f"{spread(t['ceiling_per_second'], '/s')}; load {t['load_average_before']}",
                )
            )
            if f"{arm}_ratio_to_commands" in t:
                rows.append(
                    (
                        f"throughput [{t['tuning']}]: lifecycles on {arm} AWS / command ceiling",
                        spread(t[f"{arm}_ratio_to_commands"]),
                        "the work inside the steps and between them, the commands being equal",
                    )
                )
        for arm, c in (t.get("cpu_ms_per_lifecycle") or {}).items():
            threads = c.get(ACTIVITY_THREADS)
            rows.append(
                (
                    f"throughput [{t['tuning']}]: CPU per lifecycle, {arm}",
                    f"{processes_total(c):.0f} ms",
                    ", ".join(
                        f"{v:.0f} ms {k.replace('_', ' ')}"
                        + (
                            f" ({threads:.0f} ms in its activity threads)"
                            if k == "bench_process" and threads is not None
                            else ""
                        )
                        for k, v in c.items()
                        if k != ACTIVITY_THREADS
                    ),
                )
            )
        for arm in ("fake", "moto"):
            if f"{arm}_cpu_ratio_if_activities_were_noops" in t:
                rows.append(
                    (
                        f"throughput [{t['tuning']}]: ceiling's CPU / {arm}'s",
                        spread(t[f"{arm}_cpu_ratio_to_ceiling"]),
                        f"{spread(t[f'{arm}_cpu_ratio_if_activities_were_noops'])} with its "
                        "activity threads' CPU replaced by the ceiling's (an estimate of what "
                        "making the activities' own work free would bring, not a bound)",
                    )
                )
    rows += [
        (
            "waiting: activities in flight (max / mean)",
            f"{w['activities_in_flight_max']} / {w['activities_in_flight_mean']}",
            f"{w['clusters_waiting']} clusters in CREATE_IN_PROGRESS (fake AWS) for {w['sampled_seconds']} s"
            + (
                f", {w['seconds_settled_before_window']:.0f} s after the last started waiting"
                if w.get("seconds_settled_before_window")
                else ""
            ),
        ),
        (
            "waiting: activity slots busy",
            f"{w['slots_busy_fraction']}",
            f"{w['polls_per_second']} polls/s, {w['activity_seconds_per_poll']} s per poll",
        ),
        (
            "waiting: dev server CPU / SQLite growth",
            f"{w['server_cpu_percent']} %",
            f"{w['sqlite_kib_per_cluster']} KiB per cluster to reach waiting",
        ),
        (
            "waiting: worker memory",
            f"{w['worker_rss_mib_waiting']} MiB",
            f"{w['rss_kib_per_waiting_cluster']} KiB per waiting cluster",
        ),
        (
            "waiting: history events per cluster after 1 h",
            f"{w['history_events_per_cluster_after_1h']}",
            f"sample of {w['hour_sample']}, time-skipped",
        ),
        (
            "billing: cluster-hours metered per wall second",
            f"{bl['cluster_hours_per_wall_second']}",
            f"{bl['clusters']} clusters x {bl['hours']} h",
        ),
        (
            "billing: actions per cluster-hour",
            f"{bl['actions_per_cluster_hour']}",
            f"{bl['actions_per_org_hour']} per org-hour, {bl['runs']} runs",
        ),
        (
            "billing: history events per cluster-hour",
            f"{bl['events_per_cluster_hour']}",
            f"ledger {bl['node_minutes_ledger']} = expected {bl['node_minutes_expected']} node-min",
        ),
    ]
    sc = result.get("scaleout")
    if sc is not None and "error" not in sc:
        for k, cps in sc["clusters_per_second"].items():
            rows.append(
                (
                    f"scale-out: {k} worker process(es), lifecycles/s",
                    spread(cps, "/s"),
                    f"{sc['clusters']} clusters on the fake AWS; dev server CPU "
                    f"{spread(sc['server_cpu_percent'][k], ' %')}",
                )
            )
    elif sc is not None:
        rows.append(("scale-out", "failed", str(sc["error"])[:80]))
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    lines = [
        f"{'measure'.ljust(w1)}  {'value'.ljust(w2)}  detail",
        f"{'-' * w1}  {'-' * w2}  {'-' * 6}",
    ]
    lines += [f"{a.ljust(w1)}  {b.ljust(w2)}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def _spread(summary: Any, unit: str = "") -> str:
    """A summary as ``median (min–max, n)``; a placeholder (failed, not run) as it is."""
    return spread(summary, unit) if isinstance(summary, dict) else f"{summary}"
