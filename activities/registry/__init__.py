"""The platform registry (DynamoDB in the platform account): the one package that knows its keys.

Holds what several workflows must read consistently: organisations, regional foundations, image
shares, clusters, drop-box users, notification markers and Marketplace links. Safety decisions read
it with ``ConsistentRead=True`` and write with conditional expressions; workflow visibility
(eventually consistent) is never used for them. Callers use the typed methods below; the generic
primitives (``get``, ``put``, ``update``, ``query``, ``delete``, ``put_new_and_add``) serve them and
:class:`activities.ledger.Ledger`, which owns the ledger table's keys the same way.

Layout (single table, ``pk``/``sk``):
    ORG#<org>              META              organisation (account, role, External ID, state)
    ORG#<org>              REGION#<region>   regional foundation (stack, outputs, state)
    ORG#<org>              IMAGE#<region>    image shared in that region (image, snapshots)
    ORG#<org>              CLUSTER#<name>    cluster (region, state, usage segments)
    ORG#<org>              MARKETPLACE       the org's Marketplace buyer and billing state
    ACCOUNT#<id>           META              which organisations an AWS account belongs to
    EXTID#<external id>    META              External ID -> org (never reused)
    ORGPREFIX#<id>         META              registered orgs (``orgs``) whose id extends <id>
                                             at a hyphen (ids stay free of each other's prefixes)
    MPCUSTOMER#<id>        META              Marketplace customer identifier -> org (unique)
    DROPBOX#<user>         META              drop-box user -> org and owner
    NOTIFY#<key>           META              an email sent (at most once per key)
    ORG#<org>              SHARED#<region>#<image>   an image ever shared with the org in that
                                             region (snapshots, SHARED or REVOKED); offboarding
                                             revokes every one of them
    RELEASE#<version>      META              an image release: its image per region (copies
                                             included), the release it replaced
    RELEASES               CURRENT           the version of the current release
State writes go through :meth:`Registry.transition` (the state machine in
:mod:`bridgehead.transitions`). Ledger table: see :mod:`activities.ledger`.

Modules: :mod:`~activities.registry.store` (primitives), :mod:`~activities.registry.orgs`
(organisations, foundations, image shares), :mod:`~activities.registry.clusters`,
:mod:`~activities.registry.links` (drop-box users, notifications, Marketplace),
:mod:`~activities.registry.images` (image shares per release, releases). Public import path:
``from activities.registry import Registry, org_pk``.
"""

from __future__ import annotations

from activities.registry.clusters import ClusterRecords
from activities.registry.images import ImageRecords
from activities.registry.links import LinkRecords
from activities.registry.orgs import OrgRecords
from activities.registry.store import org_pk

__all__ = ["Registry", "org_pk"]


class Registry(OrgRecords, ClusterRecords, LinkRecords, ImageRecords):
    """The registry: the generic primitives (:class:`RegistryStore`) and one typed method per
    record kind; callers outside the package use only the typed methods."""
