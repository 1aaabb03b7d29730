"""CloudFormation stacks in customer accounts: regional foundations and their cleanup."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from bridgehead import ids
from bridgehead.models.common import Model, OrgId, Region


class StackEvent(Model):
    timestamp: datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str = ""


class ClusterTemplate(Model):
    """What a cluster's template is rendered from (``bridgehead.policies.cluster_template``, a pure
    function of these and the code). The activity that creates the stack renders it, so its body
    (about 13 KB) enters no workflow history, payload or cached workflow (issue 23)."""

    org_id: OrgId
    name: str
    tags: dict[str, str] = Field(default_factory=dict)
    bootstrap_minutes: int = 20


class StackRequest(Model):
    """Create or update a stack in the customer account (through the org's role): from
    ``template_body``, or from ``cluster_template`` rendered by the activity."""

    org_id: OrgId
    region: str
    stack_name: str
    template_body: str = ""
    cluster_template: ClusterTemplate | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    client_request_token: str
    timeout_minutes: int = 240
    #: Keep the stack on failure (debugging); default: roll back.
    keep_on_failure: bool = False

    @model_validator(mode="after")
    def _one_template(self) -> StackRequest:
        if bool(self.template_body) == (self.cluster_template is not None):
            raise ValueError("a stack request needs template_body or cluster_template (not both)")
        t = self.cluster_template
        # The template names its organisation and cluster in tags, roles and the stack: it must be
        # the one of the stack it creates (ids.cluster_stack), never another organisation's.
        if t is not None and (t.org_id, ids.cluster_stack(t.org_id, t.name)) != (
            self.org_id,
            self.stack_name,
        ):
            raise ValueError(
                f"the cluster template of {t.org_id}/{t.name} is not the one of stack "
                f"{self.stack_name} of organisation {self.org_id}"
            )
        return self


class StackRef(Model):
    org_id: OrgId
    region: str
    stack_name: str
    #: Token for DeleteStack/UpdateStack idempotency.
    client_request_token: str | None = None
    #: What the caller is waiting for; decides whether a terminal status is success.
    expect: Literal["create", "update", "delete"] = "create"


class StackEventNotice(Model):
    """Payload of the ``stack_event`` signal (sent by the stack-event consumer): a hint that the
    stack may have reached a terminal state. Untrusted: the workflow only checks the stack at once
    (and only if ``stack_id`` names its own stack); the check's answer is the truth."""

    stack_id: str = Field(max_length=300)
    status: str = Field(max_length=40, pattern=r"^[A-Z_]+$")


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
    state: Literal[
        "PENDING", "CHECKING_QUOTA", "CREATING", "READY", "FAILED", "DELETING", "DELETED", "REFUSED"
    ] = "PENDING"
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
    #: Set by ``ProvisionRegion`` when its parent is the organisation's own workflow (computed from
    #: the parent's id, never from input): onboarding provisions before the org is READY
    #: (bridgehead/org_access.py).
    by_org: bool = False


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
    #: The foundation stack the registry recorded (stacks created before the ``--`` naming keep
    #: their old names); None when none was recorded.
    stack_name: str | None = None


class FoundationStatesInput(Model):
    org_id: OrgId


class FoundationStates(Model):
    """Each regional foundation's state as the registry records it (region -> state)."""

    states: dict[str, str]


class LeftoversInput(Model):
    org_id: OrgId
    region: str


class Leftovers(Model):
    resources: list[str]
