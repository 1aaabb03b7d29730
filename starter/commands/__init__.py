"""The CLI's command families, one module each (the layout of AWS ParallelCluster's CLI). Each
module has ``register(subparsers)`` and its ``cmd_*`` coroutines; ``starter.cli`` wires them."""

from __future__ import annotations

from starter.commands import (
    billing,
    cluster,
    completion,
    dropbox,
    image,
    marketplace,
    onboard,
    stack,
    workflows,
)

#: In the order ``--help`` lists them.
FAMILIES = (stack, workflows, onboard, cluster, image, dropbox, billing, marketplace, completion)
