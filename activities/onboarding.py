"""Onboarding activities: register the organisation, create or record its role, verify it."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import verification
from activities.aws import Aws
from activities.customer_roles import CustomerRoleIam
from activities.customer_roles import customer_action as _customer_action
from activities.errors import (
    PERMISSION_CODES,
    error_code,
)
from activities.registry import Registry
from bridgehead import ids, policies
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    CreateRoleRequest,
    CreateRoleResult,
    OrgArtifacts,
    RecordRoleInput,
    RegisterOrgInput,
    RegisterOrgResult,
    SetOrgStateInput,
    VerificationReport,
    VerifyRoleInput,
    parse_role_arn,
)

log = get_logger("bridgehead.activities.onboarding")


def new_external_id() -> str:
    """256 bits from the OS CSPRNG, URL-safe (AWS allows ``[\\w+=,.@:/-]``, 2-1224 chars)."""
    return "bh-" + secrets.token_urlsafe(32)


class OnboardingActivities(CustomerRoleIam):
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    # -----------------------------------------------------------------------------------------
    def _role_name(self, org_id: str, shared_account: bool | None = None) -> str:
        """The customer role's name: the configured one, or one per organisation in an account
        shared by several (so their roles never collide)."""
        if shared_account is None:
            shared_account = bool((self.registry.org_item(org_id) or {}).get("shared_account"))
        return ids.customer_role_name(self.aws.settings.customer_role_name, org_id, shared_account)

    def _artifacts(
        self,
        org_id: str,
        account_id: str,
        external_id: str,
        regions: list[str],
        shared_account: bool | None = None,
    ) -> OrgArtifacts:
        principal = self.aws.platform_principal()
        role_name = self._role_name(org_id, shared_account)
        partition = policies.partition_of(principal)
        trust = policies.trust_policy(principal, external_id)
        perms = policies.permission_policy(
            org_id, account_id, role_name, self.aws.platform_account(), partition
        )
        nodes = policies.node_roles(org_id, regions, account_id, partition)
        template = policies.customer_role_template(
            org_id, external_id, role_name, trust, perms, nodes
        )
        return OrgArtifacts(
            external_id=external_id,
            platform_principal_arn=principal,
            role_name=role_name,
            trust_policy=trust,
            permission_policy=perms,
            cloudformation_template=template,
            node_roles=nodes,
            ongoing_permission_policy=policies.ongoing_permission_policy(perms),
            instructions=[
                f"Option A: in account {account_id}, launch the CloudFormation template from this status "
                f"(it creates role {role_name} trusting only {principal} with your External ID, and the cluster node "
                "roles and instance profiles, which Bridgehead's role may pass to EC2 but never create), then send "
                f'update submit_role {{"role_arn": "arn:aws:iam::{account_id}:role/{role_name}"}}.',
                "Once the organisation is READY you may replace the permission policy with "
                "ongoing_permission_policy (no network, storage or key creation); adding a region or re-creating "
                "a foundation then needs the permission policy again, and verification says so.",
                "Option B: create the role yourself with exactly the trust policy and permission policy shown "
                "here, and each node role in node_roles (with an instance profile of the same name), then send "
                "update submit_role with its ARN.",
                "Option C: send update create_role_for_me with temporary access keys of an IAM principal "
                "allowed iam:CreateRole, iam:PutRolePolicy, iam:TagRole, iam:CreateInstanceProfile and "
                "iam:AddRoleToInstanceProfile (use `python -m starter onboard create-role`, "
                "which encrypts them); Bridgehead uses them once and never stores them.",
            ],
        )

    @activity.defn
    def register_organization(self, req: RegisterOrgInput) -> RegisterOrgResult:
        """Store the organisation with a fresh External ID; refuse an org id that is already taken.

        Idempotent across retries: the item records the registering workflow run, and a retry by the
        same run gets the same External ID back.
        """
        bind_subject(org_id=req.org_id)
        supported = self.aws.settings.supported_regions
        outside = [r for r in req.regions if r not in supported]
        if outside:
            # The deployment's own list (BRIDGEHEAD_SUPPORTED_REGIONS), narrower than the regions
            # Bridgehead knows: the input's default regions may be outside it too.
            raise ApplicationError(
                f"region(s) {', '.join(outside)} are not supported by this deployment; name the "
                f"organisation's regions among: {', '.join(supported)}",
                type="BadInput",
                non_retryable=True,
            )
        info = activity.info()
        token = f"{info.workflow_id}/{info.workflow_run_id}"
        existing = self.registry.org_item(req.org_id)
        if existing is not None:
            if existing.get("registered_by") in (token, req.registration_token):
                return RegisterOrgResult(
                    external_id=existing["external_id"],
                    artifacts=self._artifacts(
                        req.org_id,
                        existing["aws_account_id"],
                        existing["external_id"],
                        existing.get("regions") or req.regions,
                        bool(existing.get("shared_account")),
                    ),
                )
            raise _customer_action(
                f"organisation id {req.org_id!r} is already registered (account {existing['aws_account_id']}); "
                "choose another org_id"
            )
        conflict = self.registry.org_id_conflict(req.org_id)
        if conflict is not None:
            short, long = sorted((conflict, req.org_id), key=len)
            raise _customer_action(
                f"organisation id {req.org_id!r} cannot be registered next to {conflict!r}: {long!r} starts with "
                f"{short + '-'!r}, so workflow ids would be ambiguous (cluster-{long}-db would name a cluster of "
                f"both); choose an id that neither starts with {short + '-'!r} nor is a hyphen prefix of a registered id"
            )
        external_id = new_external_id()
        now = datetime.now(UTC).isoformat()
        fields = {
            "display_name": req.display_name,
            "admin_email": req.admin_email,
            "aws_account_id": req.aws_account_id,
            "regions": req.regions,
            "external_id": external_id,
            "state": "AWAITING_ROLE",
            "created_at": now,
            "registered_by": req.registration_token or token,
            "shared_account": req.shared_account,
        }
        # One AWS account, one organisation, unless every organisation in it says it is shared.
        claim = self.registry.account_claim(req.aws_account_id)
        if claim is not None and not (claim.get("shared") and req.shared_account):
            raise _customer_action(
                f"AWS account {req.aws_account_id} already belongs to organisation "
                f"{', '.join(sorted(claim.get('orgs', []))) or '?'}; one account serves one organisation. If the "
                "account is meant to be shared, every organisation in it must be registered with "
                '"shared_account": true (each then gets a role of its own).'
            )
        # Both the org id and the External ID must be new: an External ID collision (astronomically
        # unlikely at 256 bits) is a refusal, never a reuse.
        refused = self.registry.register_org(req.org_id, fields, shared_account=req.shared_account)
        if refused is not None:
            raise _customer_action(
                f"organisation id {req.org_id!r} is already registered, or account {req.aws_account_id} (or an "
                "organisation id that is a hyphen prefix of this one, or extends it) was claimed by another "
                "organisation at the same moment; nothing was registered"
            ) from refused
        log.info("organisation registered", org_id=req.org_id, account=req.aws_account_id)
        return RegisterOrgResult(
            external_id=external_id,
            artifacts=self._artifacts(
                req.org_id, req.aws_account_id, external_id, req.regions, req.shared_account
            ),
        )

    @activity.defn
    def record_role(self, req: RecordRoleInput) -> None:
        """Store the role ARN the customer submitted (after the workflow validated its shape)."""
        bind_subject(org_id=req.org_id)
        org = self.registry.org(req.org_id)
        account = parse_role_arn(req.role_arn)["account"]
        if account != org.aws_account_id:
            raise _customer_action(
                f"role {req.role_arn} is in account {account}, but organisation {req.org_id} is account {org.aws_account_id}"
            )
        self._store_role(req.org_id, req.role_arn)
        self.aws.forget(req.org_id)

    def _store_role(self, org_id: str, role_arn: str) -> None:
        """A role is recorded only while the organisation can take one (never once offboarding)."""
        settled = ["AWAITING_ROLE", "ACTION_REQUIRED", "READY"]
        ok = self.registry.record_org_role(
            org_id, role_arn, datetime.now(UTC).isoformat(), only_in=settled
        )
        if not ok:
            state = (self.registry.org_item(org_id) or {}).get("state", "not registered")
            raise _customer_action(
                f"organisation {org_id} is {state}; a role can be recorded only while AWAITING_ROLE, ACTION_REQUIRED or READY"
            )

    @activity.defn
    def set_org_state(self, req: SetOrgStateInput) -> None:
        bind_subject(org_id=req.org_id)
        self.registry.transition_org(req.org_id, req.state.value, {"state_detail": req.detail})

    # -----------------------------------------------------------------------------------------
    @activity.defn
    def create_customer_role(self, req: CreateRoleRequest) -> CreateRoleResult:
        """Create the Bridgehead role in the customer's account with their one-time keys.

        The keys arrive in an encrypted payload, are used for the calls below and are dropped;
        nothing derived from them is returned, stored or logged. Adopts an existing role only when
        its trust policy is exactly ours; on a failure after the role was created, deletes it again.
        """
        bind_subject(org_id=req.org_id)
        org = self.registry.org(req.org_id)
        keys = req.credentials
        secret = keys.secret_access_key.get_secret_value()
        token = keys.session_token.get_secret_value() if keys.session_token else None
        region = self.aws.settings.platform_region
        sts = self.aws.with_keys(keys.access_key_id, secret, token, "sts", region)
        iam = self.aws.with_keys(keys.access_key_id, secret, token, "iam", region)
        del secret, token
        try:
            account = sts.get_caller_identity()["Account"]
        except ClientError as e:
            raise _customer_action(
                f"the access keys were rejected by AWS ({error_code(e)}): they are invalid, expired or mistyped. "
                "Create fresh temporary keys and try again."
            ) from None
        if account != org.aws_account_id:
            raise _customer_action(
                f"the access keys are invalid for account {org.aws_account_id} (AWS identifies them as another account). "
                f"Use keys of an IAM principal in account {org.aws_account_id}."
            )
        role_name = self._role_name(req.org_id)
        artifacts = self._artifacts(req.org_id, org.aws_account_id, org.external_id, org.regions)
        role_arn = f"arn:{policies.partition_of(artifacts.platform_principal_arn)}:iam::{account}:role/{role_name}"
        adopted = False
        try:
            iam.create_role(
                RoleName=role_name,
                AssumeRolePolicyDocument=json.dumps(artifacts.trust_policy),
                Description=f"Bridgehead access for organisation {req.org_id}",
                MaxSessionDuration=3600,
                Tags=[{"Key": policies.TAG_ORG, "Value": req.org_id}],
            )
        except ClientError as e:
            code = error_code(e)
            if code == "EntityAlreadyExists":
                existing = self._get_trust(iam, role_name)
                if existing != artifacts.trust_policy:
                    raise _customer_action(
                        f"a role named {role_name} already exists in account {account} with a different trust policy, "
                        "so Bridgehead will not take it over. Delete or rename that role and try again, or make its "
                        "trust policy exactly the one in this organisation's status and use submit_role."
                    ) from None
                adopted = True
            elif code in PERMISSION_CODES:
                raise _customer_action(
                    f"the access keys are valid but lack permission to create a role (iam:CreateRole was denied: {code}). "
                    "Use keys of a principal allowed iam:CreateRole, iam:PutRolePolicy and iam:TagRole, or create "
                    "the role yourself with the CloudFormation template."
                ) from None
            else:
                raise _customer_action(
                    f"creating role {role_name} failed ({code}); no role was created. Try again or use the template."
                ) from None
        try:
            iam.put_role_policy(
                RoleName=role_name,
                PolicyName="bridgehead-permissions",
                PolicyDocument=json.dumps(artifacts.permission_policy),
            )
        except ClientError as e:
            if not adopted:
                # Leave nothing half-created: a role without its policy would fail verification anyway.
                try:
                    iam.delete_role(RoleName=role_name)
                except ClientError:
                    log.warning(
                        "could not delete half-created role", org_id=req.org_id, role=role_name
                    )
            raise _customer_action(
                f"the keys could create the role but not attach its permissions (iam:PutRolePolicy: {error_code(e)}); "
                "the role was removed again. Use keys allowed iam:PutRolePolicy."
            ) from None
        created_nodes: list[str] = []
        try:
            for node in artifacts.node_roles:
                self._create_node_role(iam, node, req.org_id, created_nodes)
        except (ClientError, ApplicationError) as e:
            # A node role refused (one of that name trusts someone else) leaves nothing behind
            # either: the Bridgehead role with its policy would otherwise stay, unrecorded.
            for name in created_nodes:
                self._delete_node_role(iam, name)
            if not adopted:
                self._delete_role(iam, role_name)
            if isinstance(e, ApplicationError):
                raise
            raise _customer_action(
                f"the keys could create the Bridgehead role but not the cluster node roles ({error_code(e)}); everything "
                "created was removed again. Use keys allowed iam:CreateRole, iam:PutRolePolicy, iam:TagRole, "
                "iam:CreateInstanceProfile and iam:AddRoleToInstanceProfile, or launch the CloudFormation template."
            ) from None
        self._store_role(req.org_id, role_arn)
        self.aws.forget(req.org_id)
        log.info("customer role ready", org_id=req.org_id, role_arn=role_arn, adopted=adopted)
        return CreateRoleResult(role_arn=role_arn, adopted=adopted)

    # -----------------------------------------------------------------------------------------
    @activity.defn
    def verify_role(self, req: VerifyRoleInput) -> VerificationReport:
        """Prove the role is usable and safe; every failed check names its fix (see
        ``activities/verification/``, one function per check)."""
        bind_subject(org_id=req.org_id)
        item = self.registry.org_item(req.org_id) or {}
        changed = item.get("role_changed_at")
        ctx = verification.Context(
            req=req,
            org=self.registry.org(req.org_id),
            principal=self.aws.platform_principal(),
            aws=self.aws,
            registry=self.registry,
            role_changed_at=datetime.fromisoformat(changed) if changed else None,
        )
        return verification.verify(ctx)
