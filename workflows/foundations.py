"""The organisation's ``status`` follows its foundations when something else changes them.

A ``CleanupRegion`` started directly (not by ``offboard``) deletes a region's foundation behind
the organisation's back; it then sends the organisation workflow the signal ``foundation_changed``.
The signal carries nothing: a signal is untrusted input (anyone may send it), so it only makes
the organisation read each foundation's state from the registry (strongly consistent) and show
that. A forged signal costs one registry read and changes nothing the registry does not say.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bridgehead.models import FoundationStates, FoundationStatesInput, OnboardingState

from workflows import _activities as acts
from workflows._options import REGISTRY

#: The signal ``CleanupRegion`` sends to ``org-{org_id}`` (workflows/regions.py).
FOUNDATION_CHANGED = "foundation_changed"


class FollowsFoundations:
    """Mixin of ``OnboardOrganization``: the ``foundation_changed`` signal and the registry read
    it triggers (run by the main loop, never by the handler)."""

    _s: OnboardingState
    _busy: asyncio.Lock
    _foundations_changed = False

    def _step(self, text: str) -> None:
        raise NotImplementedError

    @workflow.signal(name=FOUNDATION_CHANGED)
    def foundation_changed(self) -> None:
        """A foundation of this organisation changed outside onboarding: read them again."""
        self._foundations_changed = True

    async def _follow_foundations(self, org_id: str) -> None:
        self._foundations_changed = False
        async with self._busy:
            read: FoundationStates = await acts.foundation_states(
                FoundationStatesInput(org_id=org_id),
                summary="read the foundations' states (registry)",
                **REGISTRY,
            )
            for region, state in sorted(read.states.items()):
                progress = self._s.regions.get(region)
                if progress is None or progress.foundation == state:
                    continue
                progress.foundation = state
                progress.detail = "changed outside onboarding"
                self._step(f"foundation in {region} is {state} (registry)")
