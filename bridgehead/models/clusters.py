"""Clusters: the short config, the lifecycle's input, runtime, status and activity payloads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from bridgehead.models.common import ClusterName, Model, OrgId, Region
from bridgehead.models.guardrails import PendingAction
from bridgehead.models.stacks import ClusterTemplate, StackEvent


class ClusterState(StrEnum):
    VALIDATING = "VALIDATING"
    CREATING = "CREATING"
    RUNNING = "RUNNING"
    #: Instances stopped, storage kept (signal ``stop`` or an automatic stop); nothing is billed.
    STOPPED = "STOPPED"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_CLUSTER_STATES = frozenset(
    {ClusterState.DELETED, ClusterState.FAILED, ClusterState.CANCELLED}
)


InstanceType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
#: The cluster template's ``SshCidr`` pattern: an IPv4 CIDR of prefix /8 to /32 (so never 0.0.0.0/0).
SSH_CIDR_PATTERN = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/(8|9|[12][0-9]|3[0-2])$"


class ClusterConfig(Model):
    """The short cluster configuration (after Alces Flight).

    Attributes:
        head_instance_type: EC2 type of the head (login) node; must be in the rate table.
        compute_instance_type: EC2 type of compute nodes; must be in the rate table. Give either
            this or ``compute_instance_types``, not both.
        compute_instance_types: Ordered fallback list of compute types (1 to 4, no repeats): on
            ``InsufficientInstanceCapacity`` / ``Unsupported`` / ``InstanceLimitExceeded`` the
            cluster retries in the foundation's next Availability Zone, then with the next type.
        compute_initial_nodes: Compute nodes at creation (0 allowed).
        compute_max_nodes: Upper bound for resizes and autoscaling.
        spot_price: Optional maximum spot price (USD/hour) for compute nodes; positive.
        autoscaling: Let the compute group scale between 0 and ``compute_max_nodes``.
        head_volume_gb: Root volume of the head node in GiB.
        auto_stop_idle_minutes: Stop or delete the cluster once the head node's CPU
            (CloudWatch ``CPUUtilization``) stayed below ``idle_cpu_percent`` this long (at most
            10080; at least the deployment's minimum, 15 by default). None: never.
        idle_cpu_percent: Threshold of ``auto_stop_idle_minutes`` (default 5).
        stop_keeps_storage: Automatic actions stop the cluster (instances stopped, storage kept)
            instead of deleting it.
        max_lifetime_hours: Stop or delete the cluster this long after it became RUNNING or was
            last started (a ``keep`` during the grace period restarts the count). None: never.
        deletion_protection: Refuse the ``delete`` signal until the update
            ``set_deletion_protection {"enabled": false}``; automatic actions stop instead.
        auto_action_grace_minutes: Every automatic stop or delete is emailed to the admin this long
            before it happens; a ``keep`` signal in between cancels it.
        idle_check_minutes: Least time between two CPU readings (one activity each).
        ssh_cidr: Optional IPv4 CIDR (at most a /8, never 0.0.0.0/0) allowed to SSH to the head
            node; needs ``ssh_key_name``. Default none: access through SSM Session Manager.
        ssh_key_name: EC2 key pair for the head node; needs ``ssh_cidr``.
    """

    head_instance_type: InstanceType
    compute_instance_type: InstanceType | None = None
    compute_instance_types: (
        Annotated[list[InstanceType], Field(min_length=1, max_length=4)] | None
    ) = None
    compute_initial_nodes: Annotated[int, Field(ge=0, strict=True)] = 1
    compute_max_nodes: Annotated[int, Field(ge=0, strict=True)] = 4
    spot_price: Annotated[Decimal, Field(gt=0)] | None = None
    autoscaling: bool = False
    head_volume_gb: Annotated[int, Field(ge=1, strict=True)] = 50
    auto_stop_idle_minutes: Annotated[int, Field(ge=1, le=10080, strict=True)] | None = None
    idle_cpu_percent: Annotated[float, Field(gt=0, le=100)] = 5.0
    stop_keeps_storage: bool = False
    max_lifetime_hours: Annotated[int, Field(ge=1, le=8760, strict=True)] | None = None
    deletion_protection: bool = False
    auto_action_grace_minutes: Annotated[int, Field(ge=0, le=1440, strict=True)] = 30
    idle_check_minutes: Annotated[int, Field(ge=1, le=60, strict=True)] = 5
    ssh_cidr: Annotated[str, StringConstraints(pattern=SSH_CIDR_PATTERN)] | None = None
    ssh_key_name: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 ._+=@-]{1,255}$")] | None
    ) = None

    @property
    def compute_types(self) -> list[str]:
        """The compute instance types in the order they are tried (one when the single field is used)."""
        if self.compute_instance_types:
            return list(self.compute_instance_types)
        return [self.compute_instance_type] if self.compute_instance_type else []

    @model_validator(mode="after")
    def _one_compute_type_field(self) -> ClusterConfig:
        if (self.compute_instance_type is None) == (self.compute_instance_types is None):
            raise ValueError(
                "give exactly one of compute_instance_type (one type) and compute_instance_types "
                '(an ordered fallback list), e.g. "compute_instance_types": ["c5.xlarge", "c6i.xlarge"]'
            )
        if self.compute_instance_types and len(set(self.compute_instance_types)) != len(
            self.compute_instance_types
        ):
            raise ValueError("compute_instance_types: each type may appear only once")
        if (self.ssh_cidr is None) != (self.ssh_key_name is None):
            raise ValueError(
                "ssh_cidr and ssh_key_name go together: SSH needs both a source CIDR and a key pair "
                "(without them the head node is reached through SSM Session Manager)"
            )
        return self

    @model_validator(mode="after")
    def _initial_le_max(self) -> ClusterConfig:
        if self.compute_initial_nodes > self.compute_max_nodes:
            raise ValueError(
                f"compute_initial_nodes ({self.compute_initial_nodes}) must be <= compute_max_nodes ({self.compute_max_nodes})"
            )
        return self


class UsageSegment(Model):
    """A stretch of running time at a fixed node count (a resize starts a new segment)."""

    start: datetime
    end: datetime | None = None
    head_instance_type: str
    compute_instance_type: str
    compute_nodes: int


class Placement(Model):
    """One private subnet of the regional foundation and its Availability Zone."""

    subnet_id: str
    availability_zone: str


class CapacityAttempt(Model):
    """One try at creating the cluster's stack: which compute type, in which zone, and how it ended.

    ``outcome`` is ``creating`` while it runs, ``running`` when it succeeded, ``capacity`` when
    EC2 had no capacity for it (``error_code`` names which error) so the next one was tried, and
    ``failed`` / ``cancelled`` otherwise.
    """

    number: int
    compute_instance_type: str
    availability_zone: str
    subnet_id: str
    outcome: Literal["creating", "running", "capacity", "failed", "cancelled"] = "creating"
    error_code: str | None = None
    reason: str = ""


class ConnectInfo(Model):
    """How to reach the head node: SSM Session Manager always; SSH only where the config allows it."""

    head_instance_id: str
    ssm_command: str
    ssh_command: str | None = None


class ConsoleTailInput(Model):
    org_id: OrgId
    region: str
    stack_name: str


class ConsoleTail(Model):
    """The last lines of the head node's console output (decoded, bounded)."""

    instance_id: str | None = None
    lines: list[str] = Field(default_factory=list)


class ClusterRuntime(Model):
    """State of ``ClusterLifecycle`` carried across continue-as-new."""

    state: ClusterState = ClusterState.VALIDATING
    stack_name: str = ""
    stack_id: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    events: list[StackEvent] = Field(default_factory=list)
    failure_resource: str | None = None
    failure_reason: str | None = None
    compute_nodes: int = 0
    segments: list[UsageSegment] = Field(default_factory=list)
    cancel_requested: bool = False
    delete_requested_at: datetime | None = None
    resize_generation: int = 0
    admin_email: str = ""
    #: Guard rails (workflows/_guardrails.py); None: as the config says.
    deletion_protection: bool | None = None
    power_request: Literal["stop", "start"] | None = None
    keep_requested: bool = False
    budget_requested: bool = False
    #: The idle window and the lifetime count from here (RUNNING, a start, a ``keep``).
    idle_from: datetime | None = None
    lifetime_from: datetime | None = None
    next_idle_check: datetime | None = None
    pending: PendingAction | None = None
    auto_seq: int = 0
    stopped_at: datetime | None = None
    #: Guard-rail decisions and refusals, most recent last (shown by ``status``).
    decisions: list[str] = Field(default_factory=list)
    #: Capacity failover: every creation attempt, in order (empty for runs before the patch).
    attempts: list[CapacityAttempt] = Field(default_factory=list)
    #: The compute type the running stack uses (billing follows it); "" means the config's first.
    compute_instance_type: str = ""


class DropboxTarget(Model):
    """Where a drop-box cluster reports its outcome: ``s3://{bucket}/home/{user}/{cluster}.cf-*``."""

    bucket: str
    user: Annotated[str, StringConstraints(pattern=r"^[\w+=,.@-]{1,64}$")]


class ClusterLifecycleInput(Model):
    """Input of ``ClusterLifecycle`` (workflow id ``cluster-{org_id}-{name}``).

    Attributes:
        org_id: Owning organisation (must be READY).
        name: Cluster name, ``[A-Za-z][-A-Za-z0-9]{0,59}``.
        region: One of the organisation's regions with a foundation.
        config: The short cluster configuration.
        owner: The user the cluster is created for (tag ``bridgehead:owner``).
        dry_run: Validate and render only; return the template, create nothing.
        keep_failed_stack: Keep a failed stack for debugging instead of deleting it.
    """

    org_id: OrgId
    name: ClusterName
    region: Region
    config: ClusterConfig
    owner: Annotated[str, StringConstraints(pattern=r"^[\w+=,.@-]{1,64}$")] | None = None
    dry_run: bool = False
    keep_failed_stack: bool = False


class ClusterLifecycleRun(ClusterLifecycleInput):
    """What ``ClusterLifecycle`` runs on: the public input plus internal state, left out of the
    JSON schema users see. ``runtime`` is accepted only by a run continued from a previous run;
    ``dropbox`` only from a ``DropboxRequest`` parent (or a continued run)."""

    #: Set by the drop-box: result files (``.cf-created`` / ``.cf-failed`` / ``.cf-deleted``) go here.
    dropbox: SkipJsonSchema[DropboxTarget | None] = None
    runtime: SkipJsonSchema[ClusterRuntime | None] = None


class ResizeInput(Model):
    """Update ``resize``: new compute node count."""

    compute_nodes: Annotated[int, Field(ge=0, strict=True)]


class ResizeResult(Model):
    compute_nodes: int
    state: ClusterState


class ClusterStatus(Model):
    """Query ``status`` of ``ClusterLifecycle``."""

    org_id: str
    name: str
    region: str
    state: ClusterState
    stack_name: str
    compute_nodes: int
    login_address: str | None
    outputs: dict[str, str]
    latest_events: list[StackEvent]
    failure_resource: str | None
    failure_reason: str | None
    #: Signals and updates this workflow does not know (misspelled names), most recent last.
    ignored_requests: list[str] = Field(default_factory=list)
    deletion_protection: bool = False
    #: An announced automatic stop or delete (a ``keep`` signal cancels it).
    pending_action: PendingAction | None = None
    stopped_at: datetime | None = None
    #: Guard-rail decisions and refused requests (a refused ``delete``), most recent last.
    decisions: list[str] = Field(default_factory=list)
    #: The compute type in use (after capacity failover, maybe not the config's first).
    compute_instance_type: str | None = None
    #: Every creation attempt (type, zone, outcome and reason), in order.
    attempts: list[CapacityAttempt] = Field(default_factory=list)
    #: How to connect once RUNNING (SSM Session Manager command; SSH command if configured).
    connect: ConnectInfo | None = None


class ClusterResult(Model):
    """Result of ``ClusterLifecycle``."""

    org_id: str
    name: str
    state: ClusterState
    login_address: str | None = None
    failure_resource: str | None = None
    failure_reason: str | None = None
    rendered_template: str | None = None
    segments: list[UsageSegment] = Field(default_factory=list)
    #: ``dry_run``: what the configuration would cost.
    price: ClusterPrice | None = None
    compute_instance_type: str | None = None
    attempts: list[CapacityAttempt] = Field(default_factory=list)


class ValidateClusterInput(Model):
    org_id: OrgId
    name: str
    region: str
    config: ClusterConfig
    owner: str | None = None
    #: False: the plan carries what the template is rendered from (``template``), not its body;
    #: the stack's creation renders it (issue 23). A dry run asks for the body.
    with_body: bool = True


class ClusterPrice(Model):
    """What a configuration costs before anything is created (the rate table's prices)."""

    rate_version: str
    hourly_usd: Decimal
    monthly_usd: Decimal
    #: With every compute node up (``compute_max_nodes``): the ceiling autoscaling can reach.
    hourly_usd_at_max: Decimal
    monthly_usd_at_max: Decimal
    #: With an organisation budget: ``hourly_usd`` until the end of the month, and what is left.
    rest_of_month_usd: Decimal | None = None
    budget_left_usd: Decimal | None = None


class ClusterPlan(Model):
    """What validation found and the rendered template (everything needed to create the stack)."""

    errors: list[str] = Field(default_factory=list)
    price: ClusterPrice | None = None
    warnings: list[str] = Field(default_factory=list)
    template_body: str = ""
    #: What the template is rendered from (see ``ValidateClusterInput.with_body``).
    template: ClusterTemplate | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    admin_email: str = ""
    #: The foundation's private subnets in order of preference (one per Availability Zone).
    placements: list[Placement] = Field(default_factory=list)

    def template_fields(self) -> dict[str, Any]:
        """``StackRequest``'s template: the body if the plan carries one (plans recorded before
        issue 23, dry runs), else what the stack's creation renders it from."""
        if self.template_body:
            return {"template_body": self.template_body}
        return {"cluster_template": self.template}


class RegisterClusterInput(Model):
    org_id: OrgId
    name: str
    region: str
    state: ClusterState
    stack_name: str = ""
    owner: str | None = None
    workflow_id: str = ""
    login_address: str | None = None
    failure_reason: str | None = None
    segments: list[UsageSegment] | None = None
    head_instance_type: str | None = None
    compute_instance_type: str | None = None


class ResizeStackInput(Model):
    org_id: OrgId
    region: str
    stack_name: str
    compute_nodes: int
    client_request_token: str


class NotifyInput(Model):
    to: str
    subject: str
    body: str
    idempotency_key: str
