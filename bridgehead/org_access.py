"""What may be created in, or shared with, an organisation's account, and when (pure, no I/O).

Found by an adversarial review (session 13): ``ShareImages`` and ``ProvisionRegion`` may be started
directly (an operator re-sharing images or rebuilding a foundation), and nothing checked the
organisation's state. A start for an organisation registered with nothing but a typed account id
(no role, never verified) shared the platform's images and their snapshots with that account; an
OFFBOARDED organisation got a new foundation that offboarding, which removes the organisation's
own regions, would never delete.

The rule, applied by the activities themselves (``share_image``, ``render_foundation_template``)
before anything is created or granted:

* never for an organisation being offboarded or offboarded;
* only in one of the organisation's own regions (the ones offboarding cleans up);
* started directly, only for a READY organisation (its role verified). Onboarding itself shares
  and provisions before the organisation is READY, once the role has passed verification: its
  children say so with ``by_org``, which the child workflow computes from its parent's id, never
  from its input.
"""

from __future__ import annotations

from collections.abc import Sequence

ENDED = frozenset({"OFFBOARDING", "OFFBOARDED"})


def refusal(
    what: str, org_id: str, state: str, regions: Sequence[str], region: str, by_org: bool
) -> str | None:
    """Why ``what`` may not be done for ``org_id`` in ``region`` now, in words an operator can act
    on; ``None`` when it may."""
    if state in ENDED:
        return (
            f"{what}: organisation {org_id} is {state}; nothing is created in or shared with its "
            "account any more"
        )
    if region not in regions:
        return (
            f"{what}: {region} is not one of organisation {org_id}'s regions "
            f"({', '.join(regions) or 'none'}); only those are provisioned and cleaned up"
        )
    if not by_org and state != "READY":
        return (
            f"{what}: organisation {org_id} is {state or 'not settled'}; started directly, this is "
            f"done only for a READY organisation (onboarding does it once the role is verified: "
            f"see org-{org_id})"
        )
    return None
