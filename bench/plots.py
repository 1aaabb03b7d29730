"""Render the benchmark's JSON into PNG plots kept beside docs/benchmarks.md.

``python -m bench.plots RESULT.json [MORE.json …] [--out docs/bench-plots]`` (matplotlib comes with
the optional ``bench`` extra: ``pip install -e '.[bench]'``). Every plot shows each repetition as a
dot and the median as a bar or line, so the spread is visible, and carries the load average the
figure was measured under in its title. Plots made:

* ``throughput.png``: lifecycles on each AWS backend as a fraction of the no-op ceiling;
* ``waiting.png``: worker memory and activity slots busy against waiting clusters (one point per
  run and cache size, from every JSON given);
* ``scaleout.png``: clusters per second against worker processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "bench-plots"


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        sys.exit("matplotlib is missing: pip install -e '.[bench]' (the optional bench extra)")
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def throughput(results: list[dict[str, Any]], out: Path) -> Path | None:
    rows = [t for r in results for t in r.get("throughput", []) if "error" not in t]
    if not rows:
        return None
    plt = _plt()
    kinds = ("commands", "fake", "moto")
    arms = sum(1 for t in rows for a in kinds if f"{a}_ratio_to_ceiling" in t)
    fig, ax = plt.subplots(figsize=(max(9, 1.5 * arms), 4.5))  # room for each arm's label
    labels, x = [], 0
    for t in rows:
        for arm in kinds:
            s = t.get(f"{arm}_ratio_to_ceiling")
            if s is None:
                continue
            ax.scatter([x] * len(s["samples"]), s["samples"], color="tab:blue", s=14, zorder=3)
            ax.hlines(s["median"], x - 0.3, x + 0.3, color="black", zorder=4)
            load = t["load_average_before"][0]
            what = "command\nceiling" if arm == "commands" else f"{arm} AWS"
            labels.append(f"{what}\n{t['clusters']} clusters\n[{t['tuning']}]\nload {load}")
            x += 1
    ax.axhline(0.8, color="tab:green", linestyle="--", label="target 0.8")
    ax.axhline(1.0, color="grey", linestyle=":", label="ceiling (no-op workflows)")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("lifecycles/s ÷ ceiling/s (per repetition)")
    ax.set_ylim(0, 1.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Throughput vs the orchestration ceiling (each dot a repetition; 2 cores, shared)")
    return _save(fig, plt, out / "throughput.png")


def waiting(results: list[dict[str, Any]], out: Path) -> Path | None:
    runs = [
        run
        for r in results
        if "error" not in r.get("waiting", {"error": 1})
        for run in r["waiting"]["by_cache_size"]
    ]
    if not runs:
        return None
    plt = _plt()
    fig, (mem, busy) = plt.subplots(1, 2, figsize=(10, 4))
    colours = {True: "tab:blue", False: "tab:orange"}
    for run in runs:
        n, cached = run["clusters_waiting"], run["max_cached_workflows"]
        every = cached >= n
        label = "cache holds every cluster" if every else "cache < clusters (label: size)"
        mem.scatter(n, run["worker_rss_mib_waiting"], s=24, color=colours[every], label=label)
        busy.scatter(n, 100 * run["slots_busy_fraction"], s=24, color=colours[every], label=label)
        own = " (own process)" if run.get("worker") == "own process" else ""
        if not every:
            mem.annotate(f"cache {cached}{own}", (n, run["worker_rss_mib_waiting"]), fontsize=7)
        slots = run.get("max_concurrent_activities")
        if slots:
            busy.annotate(f"{slots} slots", (n, 100 * run["slots_busy_fraction"]), fontsize=7)
    mem.axhline(1024, color="tab:red", linestyle="--", label="1 GiB target")
    busy.axhline(2, color="tab:red", linestyle="--", label="2 % target")
    mem.set(xlabel="clusters waiting", ylabel="worker RSS (MiB)", title="Worker memory")
    busy.set(xlabel="clusters waiting", ylabel="activity slots busy (%)", title="Slots busy")
    for ax in (mem, busy):
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=8)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    loads = [run["load_average_before"][0] for run in runs]
    fig.suptitle(
        "Waiting on the fake AWS: 30 s polls (up to 1,000), event-driven waits' safety net"
        f" (10,000); 1-min load {min(loads)}–{max(loads)} on 2 cores"
    )
    return _save(fig, plt, out / "waiting.png")


def scaleout(results: list[dict[str, Any]], out: Path) -> Path | None:
    rows = [r["scaleout"] for r in results if "error" not in r.get("scaleout", {"error": 1})]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    s = rows[0]
    ks = sorted(int(k) for k in s["clusters_per_second"])
    for k in ks:
        cps = s["clusters_per_second"][str(k)]
        ax.scatter([k] * len(cps["samples"]), cps["samples"], color="tab:blue", s=14)
    ax.plot(ks, [s["clusters_per_second"][str(k)]["median"] for k in ks], color="black")
    ax.set_xticks(ks)
    ax.set(xlabel="worker processes", ylabel="cluster lifecycles per second")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Scale-out, {s['clusters']} lifecycles (load {s['load_average_before']})")
    return _save(fig, plt, out / "scaleout.png")


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(paths: list[Path], out: Path = DEFAULT_OUT) -> list[Path]:
    results = [json.loads(p.read_text()) for p in paths]
    made = [f(results, out) for f in (throughput, waiting, scaleout)]
    return [p for p in made if p is not None]


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="JSON written by python -m bench")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of the PNG files")
    a = p.parse_args()
    for made in render(a.results, a.out):
        print(made)
