"""Worker memory per waiting cluster, by workflow sandbox mode (setting ``workflow_sandbox``).

Each repetition is a fresh process (no memory carried between arms), the arms interleaved
(isolated, shared, isolated, shared …): a worker on the time-skipping server holds ``--clusters``
``ClusterLifecycle`` runs waiting on stacks that never finish (:mod:`bench.heldstacks`), every run
in the workflow cache. RSS is read after 20 warm-up clusters (imports and the first sandbox paid)
and again once all are waiting; the difference over the clusters is the memory a waiting cluster
costs. The held stacks answer at once, so this measures memory, not AWS.

    python -m bench.memory --clusters 1000 --reps 3 --out docs/bench-runs/<date>-memory.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import load_average
from bench.stats import summarise

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 20


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def one(mode: str, n: int) -> dict[str, Any]:
    """One repetition in this process: ``mode`` is a ``workflow_sandbox`` value."""
    from temporalio.worker import Worker

    from bench.harness import CLUSTER_CONFIG
    from bench.heldstacks import HeldStacks
    from bridgehead import models as m
    from tests.conftest import new_ts_env
    from worker import WORKFLOWS, sandbox_runner

    env: Any = await new_ts_env()
    held = HeldStacks()
    cfg = m.ClusterConfig(**CLUSTER_CONFIG)

    async def start(i: int) -> None:
        await env.client.start_workflow(
            "ClusterLifecycle",
            m.ClusterLifecycleInput(org_id="acme", name=f"w{i}", region="us-east-1", config=cfg),
            id=f"cluster-acme-w{i}",
            task_queue="memory",
        )

    async def until(count: int) -> None:
        while len(held.created) < count:
            await asyncio.sleep(0.2)

    try:
        with ThreadPoolExecutor(8) as ex:
            async with Worker(
                env.client,
                task_queue="memory",
                workflows=WORKFLOWS,
                activities=held.activities(),
                activity_executor=ex,
                workflow_runner=sandbox_runner(shared=mode == "shared"),
                max_cached_workflows=n + WARM_UP + 100,
            ):
                await asyncio.gather(*(start(i) for i in range(WARM_UP)))
                await until(WARM_UP)
                gc.collect()
                before = rss_mib()
                for b in range(WARM_UP, n + WARM_UP, 100):
                    await asyncio.gather(*(start(i) for i in range(b, min(n + WARM_UP, b + 100))))
                await until(n + WARM_UP)
                await asyncio.sleep(2)
                gc.collect()
                after = rss_mib()
    finally:
        await env.shutdown()
    return {
        "mode": mode,
        "clusters": n,
        "rss_mib_before": round(before, 1),
        "rss_mib_waiting": round(after, 1),
        "kib_per_waiting_cluster": round((after - before) * 1024 / n, 1),
    }


def run(clusters: int, reps: int, modes: list[str], timeout: float = 900) -> dict[str, Any]:
    samples: dict[str, list[float | None]] = {mode: [] for mode in modes}
    runs = []
    for _ in range(reps):
        for mode in modes:
            # Its own process group: a repetition that runs out of time is killed with the test
            # server it started.
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.memory", "--one", mode, "--clusters", str(clusters)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                out, err = child.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                samples[mode].append(None)
                runs.append({"mode": mode, "error": f"not all waiting within {timeout:.0f} s"})
                continue
            line = [x for x in out.splitlines() if x.startswith("{")]
            if child.returncode != 0 or not line:
                samples[mode].append(None)
                runs.append({"mode": mode, "error": err[-500:]})
                continue
            r = json.loads(line[-1])
            samples[mode].append(r["kib_per_waiting_cluster"])
            runs.append(r)
    return {
        "command": "python -m bench.memory " + " ".join(sys.argv[1:]),
        "clusters": clusters,
        "reps": reps,
        "load_average": load_average(),
        "kib_per_waiting_cluster": {
            mode: summarise(s, 1) for mode, s in samples.items() if any(x is not None for x in s)
        },
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    p.add_argument("--clusters", type=int, default=1000, help="clusters waiting at once")
    p.add_argument("--reps", type=int, default=3, help="repetitions per mode, interleaved")
    p.add_argument("--modes", nargs="+", default=["isolated", "shared"], help="sandbox modes")
    p.add_argument("--timeout", type=float, default=900, help="seconds per repetition")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help="JSON file")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(asyncio.run(one(args.one, args.clusters))), flush=True)
        sys.stderr.flush()
        # The SDK runtime can abort at interpreter exit (sdk-python#300, exit 134) after the line
        # is out, which the parent would count as a failed repetition: leave at once, as
        # bench/workerproc.py does.
        os._exit(0)
    res = run(args.clusters, args.reps, args.modes, args.timeout)
    for mode, s in res["kib_per_waiting_cluster"].items():
        print(f"{mode}: {s['median']} KiB per waiting cluster ({s['min']}-{s['max']}, n={s['n']})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
