"""moto's server for the embedded stack, with its full garbage collections kept short.

moto keeps every emulated account's state in its Python process. As that state grows (a test
session, a benchmark run), CPython's full collection walks all of it, with the GIL held, so every
request to the emulator waits: in one ``python -m bench --size small --only overhead`` run moto
made 26 full collections of up to 0.60 s (8.6 s in all), and in ``tests/integration`` 77 of up to
1.1 s (23.6 s in all), while its heap grew to about a million objects. Those were the "moto stalls"
of docs/benchmarks.md: one request of 0.3-0.6 s in either arm of a benchmark repetition.

The policy here: after each full collection, the objects that survived it are frozen
(``gc.freeze``), so the next full collections walk only what was allocated since. Frozen objects
are still freed by reference counting; only a reference cycle among them that becomes garbage
later would wait. So every ``THAW_EVERY``-th full collection first unfreezes everything and walks
it all once, which bounds what can wait to one such period. With the policy, the same overhead run
made 49 full collections of at most 73 ms (1.4 s in all).

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
