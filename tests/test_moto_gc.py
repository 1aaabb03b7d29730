"""The embedded moto server's full collections walk only what is new (``starter.moto_gc``).

Claim (docs/benchmarks.md, session 10): after each full collection the survivors are frozen, so a
later full collection does not walk them again (CPython never traverses the permanent generation);
a reference cycle among frozen objects that becomes garbage is still freed, within
``THAW_EVERY`` full collections; and the embedded stack starts moto this way.

Twins: without the policy nothing is frozen (every full collection walks the whole heap), and a
policy that never thaws keeps a dead cycle alive past ``THAW_EVERY`` collections."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from starter import moto_gc
from starter.local import moto_command


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture
def clean_gc() -> Iterator[list[Any]]:
    """Callbacks installed by the test are removed and everything unfrozen afterwards."""
    installed: list[Any] = []
    gc.collect()
    gc.unfreeze()
    try:
        yield installed
    finally:
        for cb in installed:
            gc.callbacks.remove(cb)
        gc.unfreeze()


def test_survivors_of_a_full_collection_are_frozen(clean_gc: list[Any]) -> None:
    heap = [[i] for i in range(100_000)]  # long-lived state, as moto's accounts
    clean_gc.append(moto_gc.install())
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen >= len(heap)
    # What is allocated afterwards is walked by the next collections, until frozen in turn.
    more = [[i] for i in range(50_000)]
    assert gc.get_freeze_count() == frozen
    gc.collect()
    assert gc.get_freeze_count() >= frozen + len(more)


def test_twin_without_the_policy_nothing_is_frozen(clean_gc: list[Any]) -> None:
    heap = [[i] for i in range(100_000)]
    gc.collect()
    gc.collect()
    assert len(heap) == 100_000
    assert gc.get_freeze_count() == 0  # each full collection walks all of it again


def collections_to_free(thaw_every: int, clean_gc: list[Any], limit: int) -> int | None:
    """Full collections until a cycle frozen while alive, then dropped, is freed (None: not
    within ``limit``)."""
    clean_gc.append(moto_gc.install(thaw_every))
    node = Node()
    ref = weakref.ref(node)
    gc.collect()  # frozen while alive
    del node
    for n in range(1, limit + 1):
        gc.collect()
        if ref() is None:
            return n
    return None


def test_a_dead_cycle_among_frozen_objects_is_freed_within_thaw_every(
    clean_gc: list[Any],
) -> None:
    n = collections_to_free(moto_gc.THAW_EVERY, clean_gc, moto_gc.THAW_EVERY)
    assert n is not None and n <= moto_gc.THAW_EVERY


def test_twin_a_policy_that_never_thaws_keeps_it(clean_gc: list[Any]) -> None:
    assert collections_to_free(10**9, clean_gc, moto_gc.THAW_EVERY) is None


def test_the_embedded_stack_runs_moto_with_the_policy() -> None:
    cmd = moto_command(5123)
    assert cmd[:3] == [sys.executable, "-m", "starter.moto_gc"]
    assert cmd[3:] == ["-H", "127.0.0.1", "-p", "5123"]
