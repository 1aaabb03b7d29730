"""moto's server for the embedded stack, with its full garbage collections kept short.

moto keeps every emulated account's state in its Python process. As that state grows (a test
session, a benchmark run), CPython's full collection walks all of it, with the GIL held, so every
request to the emulator waits: in a ``python -m bench --size small --only overhead`` run moto made
26 full collections (median 0.30-0.34 s, longest 0.59-0.61 s, 7.4-7.9 s in all; two runs), and in
``tests/integration`` 77 of up to 1.1 s (23.6 s in all), while its heap grew to about a million
objects. They are likely the "moto stalls" of docs/benchmarks.md (one request of 0.3-0.6 s in
either arm of a benchmark repetition); requests were not timed against them.

The policy here: after each full collection, the objects that survived it are frozen
(``gc.freeze``), so the next full collections walk only what was allocated since. Frozen objects
are still freed by reference counting; only a reference cycle among them that becomes garbage
later would wait. So every ``THAW_EVERY``-th full collection first unfreezes everything and walks
it all once, which bounds what can wait to one such period. With the policy the same overhead run
made 46 full collections, median 27 ms, 2.6 s in all; the two thawing ones took 0.66-0.72 s, as
long as a full walk ever was, so long pauses are rarer, not gone. In ``tests/integration`` the
collections took 9.3 s instead of 23.6 s, the longest (a thaw) 1.28 s (docs/bench-runs/2026-11-27-s10.json).

Freezing makes CPython's rule that spaces out full collections see a small surviving heap, so they
run more often (26 -> 46), each short. Explicit ``gc.collect()`` calls count towards the thaw. In a
long ``make run`` session each thaw costs one walk of moto's whole state, which grows with it.

Only the embedded emulator runs this way (``starter.local.LocalStack``); real AWS is unaffected.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

#: Every this many full collections, one walks the whole heap (frozen objects included).
THAW_EVERY = 20


def install(thaw_every: int = THAW_EVERY) -> Callable[[str, dict[str, Any]], None]:
    """Freeze what survives each full collection; unfreeze before every ``thaw_every``-th one.
    Returns the callback (registered in ``gc.callbacks``)."""
    full = 0

    def policy(phase: str, info: dict[str, Any]) -> None:
        nonlocal full
        if info.get("generation") != 2:
            return
        if phase == "start":
            full += 1
            if full % thaw_every == 0:
                gc.unfreeze()  # this collection walks everything, and frees cycles among them
        elif phase == "stop":
            gc.freeze()

    gc.callbacks.append(policy)
    return policy


def main(argv: list[str] | None = None) -> int:
    """``python -m starter.moto_gc [moto_server options]``: moto's own server, with the policy."""
    install()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
