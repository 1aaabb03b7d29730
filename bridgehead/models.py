"""Pydantic models for every workflow, activity, signal, update and query.

Side-effect free: stdlib + pydantic only, so workflow modules pass it through the sandbox.
Every model forbids unknown keys, so a typo in ``temporal workflow start --input`` JSON is a
clear error instead of a silently ignored field.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)

DEFAULT_TASK_QUEUE = "bridgehead"
DEFAULT_REGIONS: tuple[str, ...] = ("us-east-1", "us-east-2", "us-west-1", "us-west-2")
#: Commercial regions Bridgehead knows about (a deployment narrows this in settings).
SUPPORTED_REGIONS: tuple[str, ...] = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
    "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "ap-northeast-2", "ap-south-1",
    "sa-east-1",
)  # fmt: skip

ORG_ID_RE = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
CLUSTER_NAME_RE = r"^[A-Za-z][-A-Za-z0-9]{0,59}$"
ACCOUNT_ID_RE = r"^\d{12}$"
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
ROLE_ARN_RE = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?P<path>(?:[\w+=,.@-]+/)*)(?P<name>[\w+=,.@-]{1,64})$")


def _check_region(v: str) -> str:
    if v not in SUPPORTED_REGIONS:
        raise ValueError(f"unsupported region {v!r}; supported: {', '.join(SUPPORTED_REGIONS)}")
    return v


OrgId = Annotated[str, StringConstraints(pattern=ORG_ID_RE)]
ClusterName = Annotated[str, StringConstraints(pattern=CLUSTER_NAME_RE)]
AccountId = Annotated[str, StringConstraints(pattern=ACCOUNT_ID_RE)]
Region = Annotated[str, AfterValidator(_check_region)]


class Model(BaseModel):
    """Base for all Bridgehead payloads: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class SensitiveModel(Model):
    """Marker base: payloads of these types are encrypted by the payload codec.

    The data converter tags them (see :mod:`bridgehead.converter`) and the codec encrypts exactly
    the tagged payloads with a key that the Web UI's codec endpoint never holds.
    """


# ---------------------------------------------------------------------------------------------
# Organisations
# ---------------------------------------------------------------------------------------------


class OrgState(StrEnum):
    REGISTERING = "REGISTERING"
    AWAITING_ROLE = "AWAITING_ROLE"
    CREATING_ROLE = "CREATING_ROLE"
    VERIFYING = "VERIFYING"
    ACTION_REQUIRED = "ACTION_REQUIRED"
    SHARING_IMAGES = "SHARING_IMAGES"
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    FAILED = "FAILED"
    #: ``offboard`` accepted: foundations, image grants, the re-verification Schedule and the
    #: billing meter are being removed.
    OFFBOARDING = "OFFBOARDING"
    #: Final: nothing of Bridgehead's is left in the customer's account; the registry record and
    #: the ledger are kept (billing history), so the organisation id stays reserved.
    OFFBOARDED = "OFFBOARDED"


class OnboardOrganizationInput(Model):
    """Input of ``OnboardOrganization`` (workflow id ``org-{org_id}``).

    Attributes:
        org_id: Lower-case slug, 3-32 characters, unique across the platform.
        display_name: Human name of the organisation.
        admin_email: Where notifications go.
        aws_account_id: The customer's 12-digit AWS account id.
        regions: Regions to prepare (images and foundation); default the four US regions.
        resume: Internal, set by continue-as-new; leave empty.
    """

    org_id: OrgId
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)]
    admin_email: Annotated[str, StringConstraints(pattern=EMAIL_RE, max_length=254)]
    aws_account_id: AccountId
    regions: list[Region] = Field(default_factory=lambda: list(DEFAULT_REGIONS), min_length=1, max_length=16)
    resume: OnboardingState | None = None

    @field_validator("regions")
    @classmethod
    def _unique_regions(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("regions must not repeat")
        return v


def parse_role_arn(arn: str) -> dict[str, str]:
    """Split an IAM role ARN into partition, account, path and name, or raise ``ValueError``."""
    m = ROLE_ARN_RE.match(arn)
    if not m:
        raise ValueError(
            f"{arn!r} is not an IAM role ARN; expected arn:aws:iam::<12-digit account>:role/<name>"
        )
    return m.groupdict()


def _check_role_arn(v: str) -> str:
    parse_role_arn(v)
    return v


RoleArn = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_role_arn)]


class SubmitRoleInput(Model):
    """Update ``submit_role``: the customer created the role (e.g. with our CloudFormation template)."""

    role_arn: RoleArn


class CreateRoleForMeInput(SensitiveModel):
    """Update ``create_role_for_me``: temporary admin keys, used once to create the role.

    The keys travel only inside encrypted payloads, are never stored and never logged.
    """

    access_key_id: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{16,128}$")]
    secret_access_key: SecretStr
    session_token: SecretStr | None = None

    @field_serializer("secret_access_key", "session_token", when_used="json-unless-none")
    def _reveal_for_codec(self, v: SecretStr) -> str:
        # Serialised only into payloads the codec encrypts (SensitiveModel); repr stays masked.
        return v.get_secret_value()


class CreateRoleRequest(SensitiveModel):
    """Activity input for ``create_customer_role`` (encrypted like the update that carries it)."""

    org_id: OrgId
    credentials: CreateRoleForMeInput


class UpdateResult(Model):
    """What an update returns to its caller."""

    accepted: bool
    state: OrgState
    message: str


class OrgArtifacts(Model):
    """What the customer needs to create the role themselves."""

    external_id: str
    platform_principal_arn: str
    role_name: str
    trust_policy: dict[str, Any]
    permission_policy: dict[str, Any]
    cloudformation_template: str
    instructions: list[str]


class CheckResult(Model):
    """One verification check: what was checked, whether it passed, and how to fix it."""

    name: str
    passed: bool
    detail: str
    remedy: str = ""
    #: How the result was established: ``probe`` (a real call), ``analysis`` (policy evaluated),
    #: ``not-proved`` (the environment cannot prove it; see detail).
    method: Literal["probe", "analysis", "not-proved"] = "probe"


class VerifyRoleInput(Model):
    """Input of ``VerifyRole`` (workflow id ``org-{org_id}-verify-{n}``)."""

    org_id: OrgId
    role_arn: RoleArn


class VerificationReport(Model):
    """Result of ``VerifyRole``."""

    org_id: str
    role_arn: str
    passed: bool
    checks: list[CheckResult]

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


class RegionProgress(Model):
    images: str = "PENDING"
    foundation: str = "PENDING"
    detail: str = ""


class OffboardInput(Model):
    """Update ``offboard`` of ``OnboardOrganization``: remove everything Bridgehead put in the
    customer's account and end the organisation. Refused, changing nothing, while any cluster of
    the organisation is not DELETED (FAILED ones included).

    Attributes:
        confirm_org_id: The organisation id typed again, as a guard against offboarding the wrong one.
        abandon_foundations: When the customer already removed Bridgehead's role, the regional
            foundations cannot be deleted through it: finish anyway and list the stacks the
            customer must delete. Default false: such a failure stops offboarding (retry it).
    """

    confirm_org_id: str
    abandon_foundations: bool = False


class OrgClustersInput(Model):
    org_id: OrgId


class OnboardingState(Model):
    """Everything ``OnboardOrganization`` carries across continue-as-new."""

    state: OrgState = OrgState.REGISTERING
    external_id: str | None = None
    role_arn: str | None = None
    artifacts: OrgArtifacts | None = None
    verifications: int = 0
    last_report: VerificationReport | None = None
    last_error: str | None = None
    regions: dict[str, RegionProgress] = Field(default_factory=dict)
    steps: list[str] = Field(default_factory=list)
    #: The daily re-verification Schedule exists (created once the org is first READY).
    reverify_scheduled: bool = False
    #: ``offboard`` accepted and not finished (carried across continue-as-new).
    offboard: OffboardInput | None = None


class ReverifyInput(Model):
    """Input of ``ReverifyOrganization`` (started by the Schedule ``org-{org_id}-reverify``)."""

    org_id: OrgId
    #: How often the Schedule fires (hours); used when the Schedule is created.
    every_hours: int = Field(default=24, ge=1, le=24 * 7)


class OrgStatus(Model):
    """Query ``status`` of ``OnboardOrganization``."""

    org_id: str
    state: OrgState
    external_id: str | None
    role_arn: str | None
    artifacts: OrgArtifacts | None
    failed_checks: list[CheckResult]
    regions: dict[str, RegionProgress]
    last_error: str | None
    steps: list[str]


class RegisterOrgInput(Model):
    org_id: OrgId
    display_name: str
    admin_email: str
    aws_account_id: AccountId
    regions: list[str]
    #: Identifies the registering workflow (first run id), making retries idempotent.
    registration_token: str = ""


class RegisterOrgResult(Model):
    external_id: str
    artifacts: OrgArtifacts


class RecordRoleInput(Model):
    org_id: OrgId
    role_arn: str


class CreateRoleResult(Model):
    role_arn: str
    adopted: bool


class SetOrgStateInput(Model):
    org_id: OrgId
    state: OrgState
    detail: str = ""


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


class ImageShareState(StrEnum):
    PENDING = "PENDING"
    COPYING = "COPYING"
    SHARING = "SHARING"
    SHARED = "SHARED"
    REVOKED = "REVOKED"
    FAILED = "FAILED"


class ShareImagesInput(Model):
    """Input of ``ShareImages`` (workflow id ``org-{org_id}-images``).

    Attributes:
        org_id: The organisation whose account receives the images.
        regions: Regions to share in; default: the organisation's regions from the registry.
        revoke: Offboarding: remove every permission Bridgehead granted instead.
    """

    org_id: OrgId
    regions: list[Region] | None = None
    revoke: bool = False


class RegionShareStatus(Model):
    region: str
    state: ImageShareState = ImageShareState.PENDING
    image_id: str | None = None
    snapshot_ids: list[str] = Field(default_factory=list)
    copied_from: str | None = None
    reason: str = ""


class ShareImagesResult(Model):
    org_id: str
    regions: dict[str, RegionShareStatus]

    @property
    def all_shared(self) -> bool:
        return all(r.state == ImageShareState.SHARED for r in self.regions.values())


class OrgRegionsInput(Model):
    org_id: OrgId


class OrgRegions(Model):
    org_id: str
    aws_account_id: str
    regions: list[str]
    source_region: str


class FindImageInput(Model):
    region: str


class FindImageResult(Model):
    image_id: str | None
    name: str | None = None
    state: str | None = None


class CopyImageInput(Model):
    source_region: str
    source_image_id: str
    region: str
    client_token: str


class ImageInRegion(Model):
    region: str
    image_id: str


class ShareImageInput(Model):
    org_id: OrgId
    region: str
    image_id: str


class ShareImageResult(Model):
    image_id: str
    snapshot_ids: list[str]


# ---------------------------------------------------------------------------------------------
# CloudFormation (regional foundation and clusters)
# ---------------------------------------------------------------------------------------------


class StackEvent(Model):
    timestamp: datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str = ""


class StackRequest(Model):
    """Create or update a stack in the customer account (through the org's role)."""

    org_id: OrgId
    region: str
    stack_name: str
    template_body: str
    parameters: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    client_request_token: str
    timeout_minutes: int = 240
    #: Keep the stack on failure (debugging); default: roll back.
    keep_on_failure: bool = False


class StackRef(Model):
    org_id: OrgId
    region: str
    stack_name: str
    #: Token for DeleteStack/UpdateStack idempotency.
    client_request_token: str | None = None
    #: What the caller is waiting for; decides whether a terminal status is success.
    expect: Literal["create", "update", "delete"] = "create"


class StackPoll(Model):
    """A stack's state as seen by one poll.

    ``terminal`` is false only when a polling window ended while the stack was still in progress;
    the workflow then records ``events`` for its ``status`` query and polls again.
    """

    stack_name: str
    stack_id: str | None
    status: str
    terminal: bool
    succeeded: bool
    outputs: dict[str, str] = Field(default_factory=dict)
    events: list[StackEvent] = Field(default_factory=list)
    failure_resource: str | None = None
    failure_reason: str | None = None
    #: When the stack itself reached its terminal status (from its events), if known.
    completed_at: datetime | None = None


class QuotaCheckInput(Model):
    org_id: OrgId
    region: str
    #: Explicit vCPU need (older callers); otherwise computed from ``nodes`` and the vCPU table.
    vcpus_needed: int = 0
    #: Instance type -> node count the request may run at most.
    nodes: dict[str, int] = Field(default_factory=dict)


class QuotaReport(Model):
    region: str
    available: bool
    limit_vcpus: float | None = None
    needed_vcpus: int = 0
    in_use_vcpus: int = 0
    sufficient: bool = True
    message: str = ""


class ProvisionRegionInput(Model):
    """Input of ``ProvisionRegion`` (workflow id ``org-{org_id}-region-{region}``)."""

    org_id: OrgId
    region: Region


class FoundationStatus(Model):
    org_id: str
    region: str
    state: Literal["PENDING", "CHECKING_QUOTA", "CREATING", "READY", "FAILED", "DELETING", "DELETED", "REFUSED"] = "PENDING"
    stack_name: str = ""
    outputs: dict[str, str] = Field(default_factory=dict)
    quota: QuotaReport | None = None
    events: list[StackEvent] = Field(default_factory=list)
    reason: str = ""


class FoundationRecord(Model):
    org_id: OrgId
    region: str
    state: str
    stack_name: str
    outputs: dict[str, str] = Field(default_factory=dict)


class FoundationTemplateInput(Model):
    org_id: OrgId
    region: str


class RenderedTemplate(Model):
    template_body: str
    tags: dict[str, str]


class CleanupRegionInput(Model):
    """Input of ``CleanupRegion`` (workflow id ``org-{org_id}-cleanup-{region}``)."""

    org_id: OrgId
    region: Region


class CleanupResult(Model):
    org_id: str
    region: str
    deleted: bool
    blocking_clusters: list[str] = Field(default_factory=list)
    leftovers: list[str] = Field(default_factory=list)
    message: str


class ClusterSummary(Model):
    name: str
    region: str
    state: str


class RegionClustersInput(Model):
    org_id: OrgId
    region: str


class RegionClusters(Model):
    clusters: list[ClusterSummary]


class LeftoversInput(Model):
    org_id: OrgId
    region: str


class Leftovers(Model):
    resources: list[str]


# ---------------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------------


class ClusterState(StrEnum):
    VALIDATING = "VALIDATING"
    CREATING = "CREATING"
    RUNNING = "RUNNING"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_CLUSTER_STATES = frozenset({ClusterState.DELETED, ClusterState.FAILED, ClusterState.CANCELLED})


class ClusterConfig(Model):
    """The short cluster configuration (after Alces Flight).

    Attributes:
        head_instance_type: EC2 type of the head (login) node; must be in the rate table.
        compute_instance_type: EC2 type of compute nodes; must be in the rate table.
        compute_initial_nodes: Compute nodes at creation (0 allowed).
        compute_max_nodes: Upper bound for resizes and autoscaling.
        spot_price: Optional maximum spot price (USD/hour) for compute nodes; positive.
        autoscaling: Let the compute group scale between 0 and ``compute_max_nodes``.
        head_volume_gb: Root volume of the head node in GiB.
    """

    head_instance_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
    compute_instance_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
    compute_initial_nodes: Annotated[int, Field(ge=0)] = 1
    compute_max_nodes: Annotated[int, Field(ge=0)] = 4
    spot_price: Annotated[Decimal, Field(gt=0)] | None = None
    autoscaling: bool = False
    head_volume_gb: Annotated[int, Field(ge=1)] = 50

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
        runtime: Internal, set by continue-as-new; leave empty.
    """

    org_id: OrgId
    name: ClusterName
    region: Region
    config: ClusterConfig
    owner: Annotated[str, StringConstraints(pattern=r"^[\w+=,.@-]{1,64}$")] | None = None
    dry_run: bool = False
    keep_failed_stack: bool = False
    #: Set by the drop-box: result files (``.cf-created`` / ``.cf-failed`` / ``.cf-deleted``) go here.
    dropbox: DropboxTarget | None = None
    runtime: ClusterRuntime | None = None


class ResizeInput(Model):
    """Update ``resize``: new compute node count."""

    compute_nodes: Annotated[int, Field(ge=0)]


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


class ValidateClusterInput(Model):
    org_id: OrgId
    name: str
    region: str
    config: ClusterConfig
    owner: str | None = None


class ClusterPlan(Model):
    """What validation found and the rendered template (everything needed to create the stack)."""

    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    template_body: str = ""
    parameters: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    admin_email: str = ""


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


# ---------------------------------------------------------------------------------------------
# Billing
# ---------------------------------------------------------------------------------------------


class BillingMeterInput(Model):
    """Input of ``BillingMeter`` (workflow id ``billing-{org_id}``).

    Attributes:
        org_id: The organisation to meter.
        tick_minutes: Minutes between ledger ticks (a period is one hour; ticks close finished periods).
        cursor: Internal: the first period not yet closed (set by continue-as-new).
        totals: Internal: running totals carried across continue-as-new.
        stopping: Internal: a ``stop`` signal not yet carried out (kept across continue-as-new).
    """

    org_id: OrgId
    tick_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    cursor: datetime | None = None
    totals: UsageTotals | None = None
    stopping: bool = False


class UsageLine(Model):
    cluster: str
    instance_type: str
    node_minutes: int
    cost_usd: Decimal


class UsageTotals(Model):
    node_minutes: int = 0
    cost_usd: Decimal = Decimal("0")
    periods_closed: int = 0
    ledger_entries: int = 0
    metered_records: int = 0
    unprocessed_records: int = 0
    last_tick: datetime | None = None


class CloseBillingPeriodsInput(Model):
    org_id: OrgId
    #: Close every whole hour that ended at or before this instant (minus the grace period).
    until: datetime
    #: The meter is stopping (offboarding): close the current hour too. Refused while any cluster
    #: is still running, since its usage would otherwise be billed ahead of time.
    final: bool = False


class CloseBillingPeriodsResult(Model):
    entries_written: int
    entries_existing: int
    node_minutes: int
    cost_usd: Decimal
    closed_until: datetime
    #: The organisation's ledger totals after this call (kept exactly once, in the same
    #: transactions as the entries). None from workers older than these fields.
    ledger_node_minutes: int | None = None
    ledger_cost_usd: Decimal | None = None
    ledger_entries: int | None = None


class MeterUsageInput(Model):
    org_id: OrgId


class MeterUsageResult(Model):
    sent: int
    already_sent: int
    #: Records not acknowledged this call (refused, e.g. CustomerNotSubscribed, or unprocessed).
    unprocessed: int
    messages: list[str] = Field(default_factory=list)
    #: Of ``unprocessed``: records Marketplace returned as UnprocessedRecords (resend soon).
    transient: int = 0
    #: Batches past Marketplace's six-hour window whose unacknowledged usage was carried forward.
    expired: int = 0


# Resolve forward references.
OnboardOrganizationInput.model_rebuild()
BillingMeterInput.model_rebuild()


# ---------------------------------------------------------------------------------------------
# Drop-box (self-service through S3 files)
# ---------------------------------------------------------------------------------------------
class DropboxWatchInput(Model):
    """Input of ``DropboxWatch`` (started by the Schedule ``dropbox-watch``)."""

    bucket: str | None = None  # default: BRIDGEHEAD_INBOX_BUCKET


class DropboxFile(Model):
    key: str
    #: ``<ETag>@<LastModified>``: identifies one upload of the file.
    etag: str


class DropboxScan(Model):
    bucket: str
    files: list[DropboxFile] = Field(default_factory=list)


class DropboxRequestInput(Model):
    """Input of ``DropboxRequest`` (workflow id ``dropbox-{digest of key and etag}``): one file."""

    bucket: str
    key: str
    etag: str


class DropboxParsed(Model):
    """A request file read and checked against the user mapping (no AWS change made)."""

    kind: Literal["create", "delete"]
    user: str
    cluster: str
    org_id: str | None = None
    owner: str | None = None
    region: str | None = None
    config: ClusterConfig | None = None
    error: str | None = None


class DropboxResultInput(Model):
    target: DropboxTarget
    cluster: str
    suffix: Literal["cf-created", "cf-failed", "cf-deleted", "cf-rejected"]
    body: str
    #: The request file to remove once the result is written.
    request_key: str | None = None
