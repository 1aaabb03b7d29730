"""Organisations: onboarding, the customer role, verification and offboarding."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    StringConstraints,
    field_serializer,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from bridgehead.models.budget import BudgetAction
from bridgehead.models.common import (
    DEFAULT_REGIONS,
    EMAIL_RE,
    ROLE_ARN_RE,
    AccountId,
    Model,
    OrgId,
    Region,
    SensitiveModel,
)

VerificationLevel = Literal["strict", "warn"]


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
        shared_account: The AWS account is knowingly shared with another organisation (each
            organisation then gets a role of its own, ``BridgeheadAccess-{org_id}``). Without it an
            account already registered by another organisation is refused.
    """

    org_id: OrgId
    display_name: Annotated[
        str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)
    ]
    admin_email: Annotated[str, StringConstraints(pattern=EMAIL_RE, max_length=254)]
    aws_account_id: AccountId
    regions: list[Region] = Field(
        default_factory=lambda: list(DEFAULT_REGIONS), min_length=1, max_length=16
    )
    shared_account: bool = False

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

    Only temporary credentials are accepted (an ``ASIA…`` key id with its session token, e.g. from
    ``aws sts get-session-token`` or an assumed role): they expire on their own. The keys travel
    only inside encrypted payloads (plain JSON is refused before the update is accepted), are
    never stored and never logged.
    """

    access_key_id: Annotated[
        str,
        StringConstraints(pattern=r"^ASIA[A-Z0-9]{12,124}$"),
        Field(description="temporary access key id (ASIA...); long-lived AKIA keys are refused"),
    ]
    secret_access_key: SecretStr
    session_token: SecretStr = Field(description="session token of the temporary credentials")

    @field_serializer("secret_access_key", "session_token", when_used="json-unless-none")
    def _reveal_for_codec(self, v: SecretStr) -> str:
        # Serialised only into payloads the codec encrypts (SensitiveModel); repr stays masked.
        return v.get_secret_value()


class CreateRoleForMeInputV1(SensitiveModel):
    """The shape ``create_role_for_me`` accepted before only temporary keys were (long-lived keys,
    optional session token). Only for replaying updates accepted back then; never accepted anew."""

    access_key_id: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{16,128}$")]
    secret_access_key: SecretStr
    session_token: SecretStr | None = None

    @field_serializer("secret_access_key", "session_token", when_used="json-unless-none")
    def _reveal_for_codec(self, v: SecretStr) -> str:
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
    #: The cluster node roles (one per region, with an instance profile of the same name) the
    #: customer creates beside the Bridgehead role: ``name``, ``region``, ``trust_policy``,
    #: ``policy_name``, ``policy``. Bridgehead's role may pass them to EC2, never create them.
    node_roles: list[dict[str, Any]] = Field(default_factory=list)
    #: The narrower policy the customer may attach instead of ``permission_policy`` once the
    #: organisation is READY (no network, storage or key creation). Adding a region or
    #: re-creating a foundation needs ``permission_policy`` (the setup policy) again.
    ongoing_permission_policy: dict[str, Any] = Field(default_factory=dict)


class CheckResult(Model):
    """One verification check: what was checked, whether it passed, and how to fix it."""

    name: str
    passed: bool
    detail: str
    remedy: str = ""
    #: How the result was established: ``probe`` (a real call), ``analysis`` (policy evaluated),
    #: ``not-proved`` (the environment cannot prove it; see detail).
    method: Literal["probe", "analysis", "not-proved"] = "probe"
    #: Passed only because the organisation's verification level is ``warn``: shown in ``status``
    #: under ``warnings`` (with ``strict``, the default, the same finding fails the check).
    warning: bool = False


class VerifyRoleInput(Model):
    """Input of ``VerifyRole`` (workflow id ``org-{org_id}-verify-{n}``)."""

    org_id: OrgId
    role_arn: RoleArn
    #: ``strict`` (default): grants beyond the required set fail verification; ``warn``: they are
    #: reported as warnings and the organisation can still become READY.
    level: VerificationLevel = "strict"
    #: ``setup`` (default): the role must hold the setup policy (foundations are to be built);
    #: ``ongoing``: the organisation is READY, the narrower ongoing policy is enough.
    phase: Literal["setup", "ongoing"] = "setup"


class SetVerificationLevelInput(Model):
    """Update ``set_verification_level`` of ``OnboardOrganization``."""

    level: VerificationLevel


class VerificationReport(Model):
    """Result of ``VerifyRole``."""

    org_id: str
    role_arn: str
    passed: bool
    checks: list[CheckResult]

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.passed and c.warning]


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
    #: Set by update ``set_verification_level``; passed to every ``VerifyRole``.
    verification_level: VerificationLevel = "strict"
    #: E-mails sent to the admin so far (makes each one's idempotency key unique across runs).
    notifications: int = 0
    #: Set by update ``set_budget`` (also recorded on the registry record).
    monthly_budget_usd: Decimal | None = None
    budget_action: BudgetAction = "notify"


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
    #: Signals and updates this workflow does not know (misspelled names), most recent last.
    ignored_requests: list[str] = Field(default_factory=list)
    #: Findings that did not block READY because the verification level is ``warn``.
    warnings: list[CheckResult] = Field(default_factory=list)
    verification_level: VerificationLevel = "strict"
    monthly_budget_usd: Decimal | None = None
    budget_action: BudgetAction = "notify"


class RegisterOrgInput(Model):
    org_id: OrgId
    display_name: str
    admin_email: str
    aws_account_id: AccountId
    regions: list[str]
    #: Identifies the registering workflow (first run id), making retries idempotent.
    registration_token: str = ""
    #: The account is knowingly shared with other organisations (each gets its own role name).
    shared_account: bool = False


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


class OnboardOrganizationRun(OnboardOrganizationInput):
    """What ``OnboardOrganization`` runs on: the public input plus the state continue-as-new
    carries. A run that was not continued from a previous run refuses ``resume`` (callers never
    set internal state); it is left out of the JSON schema users see."""

    resume: SkipJsonSchema[OnboardingState | None] = None
