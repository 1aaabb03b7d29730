"""Stopping on a signal without leaving the embedded stack behind.

The embedded stack's servers (moto, the Temporal dev server, the worker) run in their own sessions
(``starter.local``: a Ctrl-C in the terminal must reach us first, so that we stop them in order).
The price: a process that dies on a signal leaves them running, holding their ports and the
machine's cores. Python's default for SIGTERM is to die at once, without ``finally`` blocks; and
asyncio's Ctrl-C cancels the main task only once the loop gets control back.

:func:`cancel_on` makes the given signals cancel the task that calls it: its ``finally`` and
``async with`` blocks run, and they stop the stack. A signal that arrives during synchronous work
(starting the stack) is acted on at the task's next ``await``.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass


@dataclass
class Stop:
    """Which signal asked the task to stop (``None`` until one did)."""

    signal: int | None = None

    def cancelled_by_us(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signal or 0)


def cancel_on(*signals: int) -> Stop:
    """From now on each of ``signals`` cancels the current task (once; another signal while it
    stops cancels it again, which is harmless). Call it from inside the running task."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("cancel_on() must be called from inside a running task")
    loop = asyncio.get_running_loop()
    stop = Stop()

    def fire(sig: int) -> None:
        stop.signal = sig
        task.cancel(f"stopped by {signal.Signals(sig).name}")

    for sig in signals:
        loop.add_signal_handler(sig, fire, sig)
    return stop
