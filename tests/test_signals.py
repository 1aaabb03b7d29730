"""A signal never leaves the embedded stack's servers behind (starter/signals.py).

moto, the Temporal dev server and the worker run in sessions of their own, so a benchmark or a
``starter up`` that dies on SIGTERM (a CI time-out, ``kill``) used to leave them running: they held
their ports and the machine's two cores and skewed every measurement after them. Each test sends
SIGTERM to the real command at a point where it has children, and checks that every child it had
is gone; each twin runs the same command with :func:`starter.signals.cancel_on` made a no-op (the
code before the fix) and shows the check finds the survivors.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from starter.local import free_port

ROOT = Path(__file__).resolve().parent.parent
#: Run a module as ``python -m`` does, with the signal handling removed (the planted defect).
WITHOUT_HANDLER = (
    "import runpy, sys, starter.signals as s; s.cancel_on = lambda *a: s.Stop(); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def sigterm(cmd: list[str], ready: str | None, kids_before: int) -> tuple[int, set[int], str]:
    """Start ``cmd``; once a line containing ``ready`` is printed (``None``: at once) and it has
    ``kids_before`` children, send SIGTERM. Returns its exit code, the children that outlived it (killed here
    afterwards) and its output."""
    p = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    out: list[str] = []

    def read() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        seen = ready is None
        while time.monotonic() < deadline and p.poll() is None:
            try:
                out.append(lines.get(timeout=0.1))
                seen = seen or (ready is not None and ready in out[-1])
            except queue.Empty:
                pass
            kids |= children(p.pid)
            if seen and len(kids) >= kids_before:
                break
        else:
            raise AssertionError(f"never ready ({ready!r}):\n" + "".join(out)[-3000:])
        p.send_signal(signal.SIGTERM)
        # Children started while it stops are its children too: keep looking until it exits.
        deadline = time.monotonic() + 90
        while p.poll() is None and time.monotonic() < deadline:
            kids |= children(p.pid)
            time.sleep(0.05)
        code = p.wait(timeout=5)
        settle = time.monotonic() + 5
        while any(alive(k) for k in kids) and time.monotonic() < settle:
            time.sleep(0.1)
        survivors = {k for k in kids if alive(k)}
    finally:
        if p.poll() is None:
            p.kill()
        for k in kids:
            try:
                os.killpg(k, signal.SIGKILL)  # each runs in a session (group) of its own
            except OSError:
                pass
    while not lines.empty():
        out.append(lines.get())
    return code, survivors, "".join(out)


def bench(planted: bool) -> list[str]:
    args = ["bench", "--size", "smoke", "--only", "throughput", "--out", os.devnull]
    if planted:
        return [sys.executable, "-c", WITHOUT_HANDLER, *args]
    return [sys.executable, "-m", *args]


def up(planted: bool) -> list[str]:
    ports = ["--port", str(free_port()), "--ui-port", str(free_port())]
    args = ["starter", "up", *ports, "--aws-port", str(free_port())]
    if planted:
        return [sys.executable, "-c", WITHOUT_HANDLER, *args]
    return [sys.executable, "-m", *args]


@pytest.mark.integration
def test_sigterm_to_the_benchmark_stops_its_stack():
    # Mid-scenario: moto and the dev server are up, lifecycles are running.
    code, survivors, out = sigterm(bench(planted=False), "throughput:default ...", kids_before=2)
    assert survivors == set(), out[-3000:]
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert "stopped by SIGTERM" in out


@pytest.mark.integration
def test_sigterm_while_the_benchmark_starts_its_stack_stops_it():
    """moto is up, the dev server starting: the signal lands in ``Bench.__aenter__``, whose
    ``__aexit__`` never runs (found by a review: the stack was left behind)."""
    code, survivors, out = sigterm(bench(planted=False), None, kids_before=1)
    assert survivors == set(), out[-3000:]
    assert code == 128 + signal.SIGTERM, out[-3000:]


@pytest.mark.integration
def test_twin_a_benchmark_without_the_handler_leaves_its_stack():
    code, survivors, out = sigterm(bench(planted=True), "throughput:default ...", kids_before=2)
    assert code == -signal.SIGTERM, out[-3000:]
    assert len(survivors) >= 2, out[-3000:]


@pytest.mark.integration
def test_sigterm_while_up_starts_the_stack_stops_what_it_started():
    # moto is up, the dev server is starting: the signal is acted on once start() returns.
    code, survivors, out = sigterm(up(planted=False), "starting the embedded stack", kids_before=1)
    assert survivors == set(), out[-3000:]
    assert code == 128 + signal.SIGTERM, out[-3000:]  # the start was cut short
    assert "stopping..." in out


@pytest.mark.integration
def test_twin_up_without_the_handler_leaves_what_it_started():
    code, survivors, out = sigterm(up(planted=True), "starting the embedded stack", kids_before=1)
    assert code == -signal.SIGTERM, out[-3000:]
    assert survivors, out[-3000:]
