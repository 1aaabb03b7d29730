"""Cost guard rails of a cluster: automatic stop or delete (idle, lifetime), deletion protection,
and the payloads of the activities that read CPU and stop or start a cluster's instances."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from bridgehead.models.common import Model, OrgId

AutoAction = Literal["stop", "delete"]


class PendingAction(Model):
    """An automatic stop or delete announced by email, carried out at ``due`` unless ``keep``
    arrives first."""

    action: AutoAction
    #: Why: ``idle`` (CPU below the threshold for the whole window), ``lifetime``, or ``budget``
    #: (the organisation's monthly budget is spent and its action is ``stop``).
    reason: Literal["idle", "lifetime", "budget"]
    announced_at: datetime
    due: datetime
    #: Sequence number of the announcement (its email's idempotency key).
    seq: int


class SetDeletionProtectionInput(Model):
    """Update ``set_deletion_protection``: while enabled, a ``delete`` signal is refused."""

    enabled: bool


class DeletionProtectionResult(Model):
    enabled: bool


class CpuQuery(Model):
    """Activity ``head_cpu``: the head node's ``CPUUtilization`` in [start, end)."""

    org_id: OrgId
    region: str
    instance_id: str
    start: datetime
    end: datetime
    threshold_percent: float


class CpuReading(Model):
    """What CloudWatch holds for the window: how many data points, their maximum, and the latest
    one at or above the threshold (None: every point was below it)."""

    datapoints: int
    max_percent: float | None = None
    last_busy_at: datetime | None = None


class PowerInput(Model):
    """Activities ``stop_cluster_nodes`` / ``start_cluster_nodes``: the head node is stopped or
    started (its volume stays), the compute group is set to 0 or back to ``compute_nodes``."""

    org_id: OrgId
    region: str
    head_instance_id: str | None = None
    compute_group: str | None = None
    compute_nodes: int = 0
    compute_min_nodes: int = 0


class PowerResult(Model):
    head_state: str | None = None
    compute_desired: int | None = None
