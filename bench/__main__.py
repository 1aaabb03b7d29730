"""``python -m bench``: what Temporal's durability costs and buys, measured side by side in one run.

Sizes: ``--size smoke`` (CI, one repetition, under a minute on a quiet machine), ``small``
(default), ``full`` (the target sizes: 200 lifecycles per repetition, 10,000 waiting clusters;
for a quiet machine). Every count can be overridden by a flag. Every comparison runs its arms
interleaved ``--reps`` times (5 at small and full) and reports median (min–max) through
``bench/stats.py``; the JSON keeps every sample and the load average. Prints one table and writes
it as JSON (``bench/results/`` by default); ``python -m bench.plots`` draws it.

Scenarios (on the embedded stack: Temporal dev server + moto server; the worker in this process,
or in worker processes for scale-out; "fake" is the latency-faithful fake AWS, bench/fakeaws.py):

1. overhead   -- one organisation onboarded and one cluster created and deleted through Bridgehead,
                 against a plain script making the same AWS calls (the same activity code, called in
                 the order Bridgehead called it, with no Temporal). Ratio Bridgehead / script (moto).
2. throughput -- N concurrent cluster lifecycles on the fake and on moto against N no-op workflows
                 of the same shape (same number of activities, same wait for ``delete``): the
                 orchestration ceiling of this server, worker and machine. Ratios per worker tuning.
3. waiting    -- W clusters waiting at once on the fake, real poll I/O, per workflow-cache size:
                 worker RSS, slots busy, dev-server CPU, SQLite growth, cache hit vs miss; history
                 events after one hour measured on the time-skipping server.
4. billing    -- the real BillingMeter and ledger activities (DynamoDB on moto) under time skipping:
                 cluster-hours metered per wall second, actions and events per cluster-hour.
5. scaleout   -- N lifecycles with 1, 2, 4 worker processes on one task queue (fake shared by all).

One module per scenario in ``bench/scenarios/``, the stack and helpers they share in
``bench/harness.py``, the table in ``bench/report.py``; this module runs them in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import TUNINGS, Bench, load_average  # noqa: E402 - after the path insert
from bench.report import table  # noqa: E402
from bench.scenarios.billing import billing  # noqa: E402
from bench.scenarios.overhead import overhead  # noqa: E402
from bench.scenarios.scaleout import scaleout  # noqa: E402
from bench.scenarios.throughput import throughput  # noqa: E402
from bench.scenarios.waiting import waiting  # noqa: E402
from starter.signals import cancel_on  # noqa: E402

RUNNERS_ALL = ("sandboxed", "unsandboxed", "aws-latency")
SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "clusters": 3,
        "waiting": 20,
        "wait_seconds": 3,
        "wait_settle": 0,
        "wait_caches": [20],
        "hour_sample": 3,
        "billing_clusters": 3,
        "billing_hours": 12,
        "tunings": ["default"],
        "overhead_runners": ["sandboxed", "aws-latency"],
        "scale_workers": [2],
        "scale_clusters": 2,
        "reps": 1,
    },
    "small": {
        "overhead_runners": list(RUNNERS_ALL),
        "clusters": 40,
        "waiting": 300,
        "wait_seconds": 60,
        "wait_settle": 0,
        "wait_caches": [300, 30],
        "hour_sample": 20,
        "billing_clusters": 10,
        "billing_hours": 72,
        "tunings": ["default", "narrow"],
        "scale_workers": [1, 2, 4],
        "scale_clusters": 40,
        "reps": 5,
    },
    "full": {
        "overhead_runners": list(RUNNERS_ALL),
        "clusters": 200,
        "waiting": 10000,
        "wait_seconds": 300,
        # The window opens once the last-started cluster is on the safety net's 10-minute pause
        # (its checks at 0, 1, 4 and 13 minutes are behind it): the steady state, not the start.
        "wait_settle": 780,
        # The worker alone in its process, a cache that keeps it under 1 GiB (docs/benchmarks.md:
        # 836 MiB with 4,000), and the slots 2 % busy needs (2.09 % of 256 measured).
        "wait_process": True,
        # The shared sandbox: a third of the memory per cached run; with the isolated one 10,000
        # waiting clusters took the worker past 2 GB (docs/benchmarks.md, session 6).
        "wait_sandbox": "shared",
        "wait_caches": [4000, 1000],
        "wait_slots": 272,
        "hour_sample": 50,
        "billing_clusters": 10,
        "billing_hours": 72,
        "tunings": ["default", "narrow", "wide"],
        "scale_workers": [1, 2, 4],
        "scale_clusters": 200,
        "reps": 5,
    },
}


async def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Every scenario in turn; the JSON is rewritten after each, so a long run keeps what it measured."""
    result: dict[str, Any] = {
        "size": args.size,
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "worker_tunings": {t: TUNINGS[t] for t in args.tunings},
        "reps": args.reps,
        # The machine is shared: every figure is read next to the load it was measured under.
        "load_average_start": load_average(),
    }

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    # SIGTERM (a CI timeout, ``kill``) cancels the run like Ctrl-C, so the stack's servers, in their
    # own sessions, are stopped on the way out instead of outliving us (starter/signals.py).
    cancel_on(signal.SIGTERM)
    async with Bench(args) as b:
        steps: list[tuple[str, Any]] = [
            ("overhead", lambda: overhead(b, args.overhead_runners, args.reps))
        ]
        steps += [
            (
                f"throughput:{t}",
                lambda t=t: throughput(
                    b, args.clusters, t, args.reps, tuple(dict.fromkeys(args.backends))
                ),
            )
            for t in args.tunings
        ]
        steps += [
            (
                "waiting",
                lambda: waiting(
                    b,
                    args.waiting,
                    args.wait_seconds,
                    args.hour_sample,
                    args.wait_caches,
                    args.wait_slots,
                    args.wait_process,
                    settle=args.wait_settle,
                    sandbox=args.wait_sandbox,
                ),
            ),
            ("billing", lambda: billing(b, args.billing_clusters, args.billing_hours)),
            (
                "scaleout",
                lambda: scaleout(b, args.scale_clusters, args.scale_workers, args.reps),
            ),
        ]
        for name, step in steps:
            if args.only and name.split(":")[0] not in args.only:
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                value = await step()
            except Exception as e:  # noqa: BLE001 - report the failure, keep the other figures
                value = {"error": f"{type(e).__name__}: {e}"[:500]}
            value["scenario_seconds"] = round(time.perf_counter() - t0, 1)
            value["load_average_after"] = load_average()
            if name.startswith("throughput:"):
                result.setdefault("throughput", []).append(value)
            else:
                result[name] = value
            save()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--size", choices=sorted(SIZES), default="small", help="preset counts (default small)"
    )
    p.add_argument("--clusters", type=int, help="concurrent lifecycles in the throughput scenario")
    p.add_argument("--scale-workers", nargs="+", type=int, help="worker process counts to compare")
    p.add_argument("--scale-clusters", type=int, help="lifecycles per scale-out repetition")
    p.add_argument("--waiting", type=int, help="clusters held waiting")
    p.add_argument("--wait-seconds", type=float, help="how long to sample the waiting clusters")
    p.add_argument(
        "--wait-sandbox",
        choices=["isolated", "shared"],
        help="sandbox mode of the waiting worker process (with --wait-process; full: shared)",
    )
    p.add_argument(
        "--wait-settle",
        type=float,
        help="seconds between the last cluster waiting and the sampling window (full: 780, the "
        "steady state of the safety net's checks)",
    )
    p.add_argument(
        "--wait-caches",
        nargs="+",
        type=int,
        help="workflow cache sizes (max_cached_workflows) to compare while clusters wait",
    )
    p.add_argument(
        "--wait-slots",
        type=int,
        help="activity slots (threads) of the waiting worker (default: the default tuning's 32)",
    )
    p.add_argument(
        "--wait-process",
        action="store_true",
        default=None,
        help="run the waiting worker in a process of its own (its RSS and CPU alone)",
    )
    p.add_argument("--hour-sample", type=int, help="clusters waiting one time-skipped hour")
    p.add_argument("--billing-clusters", type=int, help="running clusters in the billing scenario")
    p.add_argument("--billing-hours", type=int, help="time-skipped hours in the billing scenario")
    p.add_argument(
        "--reps", type=int, help="repetitions per arm, interleaved (figures need at least 5)"
    )
    p.add_argument(
        "--tunings", nargs="+", choices=sorted(TUNINGS), help="worker tunings to compare"
    )
    p.add_argument(
        "--backends",
        nargs="+",
        choices=["fake", "moto"],
        default=["fake", "moto"],
        help="AWS backends of the throughput scenario (default both; moto saturates the machine "
        "at 200 lifecycles and its late repetitions overlap the next arms)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=["overhead", "throughput", "waiting", "billing", "scaleout"],
        help="run only these scenarios",
    )
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/<size>-<time>.json)")
    args = p.parse_args(argv)
    for k, v in SIZES[args.size].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    from bridgehead.logging import configure_logging

    configure_logging("WARNING")  # the table is the output; warnings and errors still reach stderr
    out = (
        args.out
        or ROOT / "bench" / "results" / f"{args.size}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    )
    try:
        result = asyncio.run(run(args, out))
    except asyncio.CancelledError:
        print(f"stopped by SIGTERM; what was measured is in {out}", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(table(result))
    print(f"\nwritten to {out}")
    failed = [k for k, v in result.items() if isinstance(v, dict) and "error" in v] + [
        f"throughput:{t.get('tuning', '?')}" for t in result.get("throughput", []) if "error" in t
    ]
    if failed:
        print(f"scenarios that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the SDK runtime can abort at interpreter exit (sdk-python#300)
