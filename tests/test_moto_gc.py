"""The embedded moto server's full collections walk only what is new (``starter.moto_gc``).

Claims (docs/benchmarks.md, session 10):

* after each full collection its survivors are frozen, so later full collections do not walk them
  again (CPython never traverses the permanent generation), while garbage made since is still
  freed by the next collection;
* a reference cycle among frozen objects that becomes garbage is freed by the next thawing
  collection, within ``THAW_EVERY`` full collections, and not before;
* the embedded stack starts moto through this module, and the module installs the policy.

Twins: each check run against a planted defect (no policy, a policy that freezes before collecting,
one that never thaws, one that thaws every time, a ``main`` without the policy, a stack that starts
plain ``moto_server``) reports it."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from starter import local, moto_gc

Install = Callable[..., Any]


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


# --- planted policies ------------------------------------------------------------------------------
def no_policy(thaw_every: int = moto_gc.THAW_EVERY) -> Any:
    def policy(phase: str, info: dict[str, Any]) -> None:
        return None

    gc.callbacks.append(policy)
    return policy


def freezing_before_collecting(thaw_every: int = moto_gc.THAW_EVERY) -> Any:
    def policy(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") == 2 and phase == "start":
            gc.freeze()

    gc.callbacks.append(policy)
    return policy


def thawing_every_time(thaw_every: int = moto_gc.THAW_EVERY) -> Any:
    return moto_gc.install(1)


def never_thawing(thaw_every: int = moto_gc.THAW_EVERY) -> Any:
    return moto_gc.install(10**9)


# --- the checks --------------------------------------------------------------------------------
def survivors_frozen(install: Install, clean_gc: list[Any]) -> bool:
    """Do the survivors of a full collection end up frozen (not walked again)?"""
    heap = [[i] for i in range(100_000)]  # long-lived state, as moto's accounts
    clean_gc.append(install())
    gc.collect()
    frozen = gc.get_freeze_count()
    more = [[i] for i in range(50_000)]  # allocated afterwards: walked until frozen in turn
    unchanged = gc.get_freeze_count() == frozen
    gc.collect()
    return frozen >= len(heap) and unchanged and gc.get_freeze_count() >= frozen + len(more)


def new_garbage_freed_at_once(install: Install, clean_gc: list[Any]) -> bool:
    """Is a cycle made after a full collection, then dropped, freed by the next one?"""
    clean_gc.append(install())
    gc.collect()
    node = Node()
    ref = weakref.ref(node)
    del node
    gc.collect()
    return ref() is None


def collections_to_free(install: Install, clean_gc: list[Any], limit: int) -> int | None:
    """Full collections until a cycle frozen while alive, then dropped, is freed (None: not
    within ``limit``)."""
    clean_gc.append(install(moto_gc.THAW_EVERY))
    node = Node()
    ref = weakref.ref(node)
    gc.collect()  # frozen while alive
    del node
    for n in range(1, limit + 1):
        gc.collect()
        if ref() is None:
            return n
    return None


def frees_frozen_garbage_at_the_thaw(install: Install, clean_gc: list[Any]) -> bool:
    n = collections_to_free(install, clean_gc, moto_gc.THAW_EVERY)
    # Freed, and not by the first collection: that would mean nothing stayed frozen.
    return n is not None and 1 < n <= moto_gc.THAW_EVERY


def test_survivors_of_a_full_collection_are_frozen(clean_gc: list[Any]) -> None:
    assert survivors_frozen(moto_gc.install, clean_gc)


def test_twin_without_the_policy_nothing_is_frozen(clean_gc: list[Any]) -> None:
    assert not survivors_frozen(no_policy, clean_gc)


def test_garbage_made_since_is_freed_by_the_next_collection(clean_gc: list[Any]) -> None:
    assert new_garbage_freed_at_once(moto_gc.install, clean_gc)


def test_twin_freezing_before_collecting_keeps_new_garbage(clean_gc: list[Any]) -> None:
    assert not new_garbage_freed_at_once(freezing_before_collecting, clean_gc)


def test_a_dead_cycle_among_frozen_objects_is_freed_at_the_thaw(clean_gc: list[Any]) -> None:
    assert frees_frozen_garbage_at_the_thaw(moto_gc.install, clean_gc)


@pytest.mark.parametrize("planted", [never_thawing, thawing_every_time])
def test_twin_never_or_always_thawing_is_caught(planted: Install, clean_gc: list[Any]) -> None:
    assert not frees_frozen_garbage_at_the_thaw(planted, clean_gc)


# --- how moto is started -------------------------------------------------------------------------
def main_installs_the_policy(
    main: Callable[[list[str]], int], monkeypatch: Any, clean_gc: list[Any]
) -> bool:
    """Run ``main`` with moto's own server replaced; was the policy installed, moto given the
    arguments?"""
    import moto.server

    seen: list[list[str]] = []
    monkeypatch.setattr(moto.server, "main", lambda argv=None: seen.append(list(argv or [])))
    before = list(gc.callbacks)
    main(["-H", "127.0.0.1", "-p", "5123"])
    added = [cb for cb in gc.callbacks if cb not in before]
    clean_gc.extend(added)
    return len(added) == 1 and seen == [["-H", "127.0.0.1", "-p", "5123"]]


def test_main_installs_the_policy_and_runs_moto(
    monkeypatch: pytest.MonkeyPatch, clean_gc: list[Any]
) -> None:
    assert main_installs_the_policy(moto_gc.main, monkeypatch, clean_gc)


def test_twin_a_main_without_the_policy_is_caught(
    monkeypatch: pytest.MonkeyPatch, clean_gc: list[Any]
) -> None:
    monkeypatch.setattr(moto_gc, "install", lambda *a: None)
    assert not main_installs_the_policy(moto_gc.main, monkeypatch, clean_gc)


def spawned_moto(stack_class: type[local.LocalStack], tmp_path: Path, monkeypatch: Any) -> Any:
    """The command line ``start_moto`` spawns (nothing is started)."""
    spawned: dict[str, list[str]] = {}
    stack = stack_class(state_dir=tmp_path, moto_port=5123, with_worker=False)
    monkeypatch.setattr(stack, "_spawn", lambda name, args, env=None: spawned.update({name: args}))
    monkeypatch.setattr(stack, "_wait", lambda *a, **k: None)
    stack.start_moto()
    return spawned["moto"]


def runs_the_policy(cmd: list[str]) -> bool:
    return cmd[:3] == [sys.executable, "-m", "starter.moto_gc"] and cmd[-2:] == ["-p", "5123"]


def test_the_embedded_stack_starts_moto_with_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runs_the_policy(spawned_moto(local.LocalStack, tmp_path, monkeypatch))


class _PlainMoto(local.LocalStack):
    """The planted defect: moto's own console script, as before."""

    def start_moto(self) -> None:
        self._spawn("moto", [local.bin_path("moto_server"), "-H", "127.0.0.1", "-p", "5123"])


def test_twin_a_stack_starting_plain_moto_server_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not runs_the_policy(spawned_moto(_PlainMoto, tmp_path, monkeypatch))
