"""Onboarding activities: register the organisation, create or record its role, verify it."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import (
    PERMISSION_CODES,
    CustomerActionRequired,
    aws_errors,
    error_code,
)
from activities.registry import Registry, _to_item
from bridgehead import ids, policies
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    CheckResult,
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


def _customer_action(message: str) -> ApplicationError:
    return ApplicationError(message, type=CustomerActionRequired.__name__, non_retryable=True)


class OnboardingActivities:
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

    def _artifacts(self, org_id: str, account_id: str, external_id: str, shared_account: bool | None = None) -> OrgArtifacts:
        principal = self.aws.platform_principal()
        role_name = self._role_name(org_id, shared_account)
        trust = policies.trust_policy(principal, external_id)
        perms = policies.permission_policy(
            org_id, account_id, role_name, self.aws.platform_account(), policies.partition_of(principal)
        )
        template = policies.customer_role_template(org_id, external_id, role_name, trust, perms)
        return OrgArtifacts(
            external_id=external_id,
            platform_principal_arn=principal,
            role_name=role_name,
            trust_policy=trust,
            permission_policy=perms,
            cloudformation_template=template,
            instructions=[
                f"Option A: in account {account_id}, launch the CloudFormation template from this status "
                f"(it creates role {role_name} trusting only {principal} with your External ID), then send "
                f'update submit_role {{"role_arn": "arn:aws:iam::{account_id}:role/{role_name}"}}.',
                "Option B: create the role yourself with exactly the trust policy and permission policy shown "
                "here, then send update submit_role with its ARN.",
                "Option C: send update create_role_for_me with temporary access keys of an IAM principal "
                "allowed iam:CreateRole and iam:PutRolePolicy (use `python -m starter onboard create-role`, "
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
        info = activity.info()
        token = f"{info.workflow_id}/{info.workflow_run_id}"
        existing = self.registry.org_item(req.org_id)
        if existing is not None:
            if existing.get("registered_by") in (token, req.registration_token):
                return RegisterOrgResult(
                    external_id=existing["external_id"],
                    artifacts=self._artifacts(req.org_id, existing["aws_account_id"], existing["external_id"],
                                              bool(existing.get("shared_account"))),
                )
            raise _customer_action(
                f"organisation id {req.org_id!r} is already registered (account {existing['aws_account_id']}); "
                "choose another org_id"
            )
        external_id = new_external_id()
        now = datetime.now(UTC).isoformat()
        item = {
            "pk": f"ORG#{req.org_id}", "sk": "META", "org_id": req.org_id,
            "display_name": req.display_name, "admin_email": req.admin_email,
            "aws_account_id": req.aws_account_id, "regions": req.regions, "external_id": external_id,
            "state": "AWAITING_ROLE", "created_at": now, "registered_by": req.registration_token or token,
            "shared_account": req.shared_account,
        }  # fmt: skip
        # One AWS account, one organisation, unless every organisation in it says it is shared.
        claim = self.registry.get(f"ACCOUNT#{req.aws_account_id}", "META")
        if claim is not None and not (claim.get("shared") and req.shared_account):
            raise _customer_action(
                f"AWS account {req.aws_account_id} already belongs to organisation "
                f"{', '.join(sorted(claim.get('orgs', []))) or '?'}; one account serves one organisation. If the "
                "account is meant to be shared, every organisation in it must be registered with "
                '"shared_account": true (each then gets a role of its own).'
            )
        account_claim = {
            "Update": {
                "TableName": self.registry.table,
                "Key": _to_item({"pk": f"ACCOUNT#{req.aws_account_id}", "sk": "META"}),
                "UpdateExpression": "SET #sh = :sh ADD #orgs :org",
                "ConditionExpression": "attribute_not_exists(pk)" + (" OR #sh = :true" if req.shared_account else ""),
                "ExpressionAttributeNames": {"#sh": "shared", "#orgs": "orgs"},
                "ExpressionAttributeValues": {
                    ":sh": {"BOOL": req.shared_account}, ":org": {"SS": [req.org_id]},
                    **({":true": {"BOOL": True}} if req.shared_account else {}),
                },
            }
        }  # fmt: skip
        try:
            with aws_errors("register organisation"):
                # Both the org id and the External ID must be new: the second item makes an External
                # ID collision (astronomically unlikely at 256 bits) a refusal, never a reuse.
                self.registry.ddb.transact_write_items(
                    TransactItems=[
                        {"Put": {"TableName": self.registry.table, "Item": _to_item(item),
                                 "ConditionExpression": "attribute_not_exists(pk)"}},
                        {"Put": {"TableName": self.registry.table,
                                 "Item": _to_item({"pk": f"EXTID#{external_id}", "sk": "META", "org_id": req.org_id}),
                                 "ConditionExpression": "attribute_not_exists(pk)"}},
                        account_claim,
                    ]
                )  # fmt: skip
        except ApplicationError as e:
            cause = e.__cause__
            if isinstance(cause, ClientError) and error_code(cause) == "TransactionCanceledException":
                raise _customer_action(
                    f"organisation id {req.org_id!r} is already registered, or account {req.aws_account_id} was "
                    "claimed by another organisation at the same moment; nothing was registered"
                ) from e
            raise
        log.info("organisation registered", org_id=req.org_id, account=req.aws_account_id)
        return RegisterOrgResult(external_id=external_id,
                                 artifacts=self._artifacts(req.org_id, req.aws_account_id, external_id, req.shared_account))

    @activity.defn
    def record_role(self, req: RecordRoleInput) -> None:
        """Store the role ARN the customer submitted (after the workflow validated its shape)."""
        bind_subject(org_id=req.org_id)
        org = self.registry.org(req.org_id)
        account = parse_role_arn(req.role_arn)["account"]
        if account != org.aws_account_id:
            raise _customer_action(f"role {req.role_arn} is in account {account}, but organisation {req.org_id} is account {org.aws_account_id}")
        self._store_role(req.org_id, req.role_arn)
        self.aws.forget(req.org_id)

    def _store_role(self, org_id: str, role_arn: str) -> None:
        """A role is recorded only while the organisation can take one (never once offboarding)."""
        settled = {":a": "AWAITING_ROLE", ":b": "ACTION_REQUIRED", ":c": "READY"}
        ok = self.registry.update(f"ORG#{org_id}", "META", {"role_arn": role_arn},
                                  condition="#s IN (:a, :b, :c)", names={"#s": "state"}, values=settled)  # fmt: skip
        if not ok:
            state = (self.registry.org_item(org_id) or {}).get("state", "not registered")
            raise _customer_action(f"organisation {org_id} is {state}; a role can be recorded only while AWAITING_ROLE, ACTION_REQUIRED or READY")

    @activity.defn
    def set_org_state(self, req: SetOrgStateInput) -> None:
        bind_subject(org_id=req.org_id)
        self.registry.transition("org", f"ORG#{req.org_id}", "META", req.state.value, {"state_detail": req.detail},
                                 subject=req.org_id)  # fmt: skip

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
        sts = Aws.with_keys(keys.access_key_id, secret, token, "sts", region)
        iam = Aws.with_keys(keys.access_key_id, secret, token, "iam", region)
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
        artifacts = self._artifacts(req.org_id, org.aws_account_id, org.external_id)
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
                raise _customer_action(f"creating role {role_name} failed ({code}); no role was created. Try again or use the template.") from None
        try:
            iam.put_role_policy(
                RoleName=role_name, PolicyName="bridgehead-permissions", PolicyDocument=json.dumps(artifacts.permission_policy)
            )
        except ClientError as e:
            if not adopted:
                # Leave nothing half-created: a role without its policy would fail verification anyway.
                try:
                    iam.delete_role(RoleName=role_name)
                except ClientError:
                    log.warning("could not delete half-created role", org_id=req.org_id, role=role_name)
            raise _customer_action(
                f"the keys could create the role but not attach its permissions (iam:PutRolePolicy: {error_code(e)}); "
                "the role was removed again. Use keys allowed iam:PutRolePolicy."
            ) from None
        self._store_role(req.org_id, role_arn)
        self.aws.forget(req.org_id)
        log.info("customer role ready", org_id=req.org_id, role_arn=role_arn, adopted=adopted)
        return CreateRoleResult(role_arn=role_arn, adopted=adopted)

    @staticmethod
    def _get_trust(iam: Any, role_name: str) -> dict[str, Any]:
        return policies.parse_document(iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"])

    # -----------------------------------------------------------------------------------------
    @activity.defn
    def verify_role(self, req: VerifyRoleInput) -> VerificationReport:
        """Prove the role is usable and safe; every failed check names its fix."""
        bind_subject(org_id=req.org_id)
        org = self.registry.org(req.org_id)
        principal = self.aws.platform_principal()
        checks: list[CheckResult] = []
        arn = parse_role_arn(req.role_arn)
        report = lambda: VerificationReport(  # noqa: E731
            org_id=req.org_id, role_arn=req.role_arn, passed=all(c.passed for c in checks), checks=checks
        )
        if arn["account"] != org.aws_account_id:
            checks.append(CheckResult(
                name="role-account", passed=False,
                detail=f"the role is in account {arn['account']}, the organisation is account {org.aws_account_id}",
                remedy=f"Create the role in account {org.aws_account_id} and submit its ARN."))  # fmt: skip
            return report()
        # 1. Assume with the External ID.
        try:
            creds = self.aws.assume(req.role_arn, org.external_id, f"bridgehead-verify-{req.org_id}")
        except ClientError as e:
            checks.append(CheckResult(
                name="assume-role", passed=False,
                detail=f"sts:AssumeRole with the External ID failed: {error_code(e)}",
                remedy=f"Make sure role {req.role_arn} exists and its trust policy allows {principal} with sts:ExternalId {org.external_id}."))  # fmt: skip
            return report()
        import boto3

        session = boto3.session.Session(**creds)
        del creds
        whoami = session.client("sts", region_name=self.aws.settings.platform_region).get_caller_identity()
        ok = whoami["Account"] == org.aws_account_id
        checks.append(CheckResult(
            name="assume-role", passed=ok,
            detail=f"assumed {req.role_arn} with the External ID; acting as account {whoami['Account']}",
            remedy="" if ok else f"The role must live in account {org.aws_account_id}."))  # fmt: skip
        iam = session.client("iam", region_name=self.aws.settings.platform_region)
        role_name = arn["name"]
        # 2. Trust policy, read through the role itself.
        try:
            trust = self._get_trust(iam, role_name)
        except ClientError as e:
            checks.append(CheckResult(
                name="trust-policy-readable", passed=False, method="probe",
                detail=f"iam:GetRole on the role itself was refused ({error_code(e)})",
                remedy="Grant iam:GetRole on the role to itself (it is in the permission policy)."))  # fmt: skip
            trust = None
        if trust is not None:
            for name, passed, detail, remedy in policies.analyse_trust(trust, principal, org.external_id):
                checks.append(CheckResult(name=name, passed=passed, detail=detail, remedy=remedy, method="analysis"))
        # 3. Confused-deputy probe: without the External ID, AssumeRole must be refused.
        try:
            self.aws.assume(req.role_arn, None, f"bridgehead-probe-{req.org_id}")
            if self.aws.settings.sts_enforces_trust:
                checks.append(CheckResult(
                    name="external-id-required", passed=False, method="probe",
                    detail="AssumeRole WITHOUT the External ID succeeded: anyone who can act as the platform principal could use this role",
                    remedy=f'Add "Condition": {{"StringEquals": {{"sts:ExternalId": "{org.external_id}"}}}} to the trust policy.'))  # fmt: skip
            else:
                ext_ok = any(c.name == "trust-policy-external-id" and c.passed for c in checks)
                checks.append(CheckResult(
                    name="external-id-required", passed=ext_ok, method="not-proved",
                    detail="this AWS endpoint does not enforce trust policies (emulator), so the probe proves nothing; "
                           + ("the trust-policy analysis shows the External ID is required" if ext_ok else "and the trust policy does not require it"),
                    remedy="" if ext_ok else "Require the External ID in the trust policy."))  # fmt: skip
        except ClientError as e:
            checks.append(CheckResult(
                name="external-id-required", passed=True, method="probe",
                detail=f"AssumeRole without the External ID was refused ({error_code(e)}), as it must be"))  # fmt: skip
        # 4. Every required action is granted by the role's own policies.
        try:
            docs = self._role_policies(iam, role_name)
            required = policies.required_actions(
                policies.permission_policy(req.org_id, org.aws_account_id, role_name, self.aws.platform_account(), arn["partition"])
            )
            verdict = policies.evaluate_actions(required, docs)
            missing = {a: why for a, why in verdict.items() if why}
            checks.append(CheckResult(
                name="permissions", passed=not missing, method="analysis",
                detail=f"all {len(required)} required actions are granted" if not missing
                else f"{len(missing)} of {len(required)} required actions are missing: "
                + "; ".join(f"{a} ({why})" for a, why in sorted(missing.items())),
                remedy="" if not missing else "Attach the permission policy from this organisation's status (or add: "
                + ", ".join(sorted(missing)) + ")."))  # fmt: skip
        except ClientError as e:
            checks.append(CheckResult(
                name="permissions", passed=False, method="probe",
                detail=f"could not read the role's policies ({error_code(e)})",
                remedy="Grant iam:ListAttachedRolePolicies, iam:ListRolePolicies, iam:GetRolePolicy, iam:GetPolicy and iam:GetPolicyVersion (in the permission policy)."))  # fmt: skip
        # 5. Regions are enabled for the account.
        try:
            ec2 = session.client("ec2", region_name=self.aws.settings.platform_region)
            enabled = {r["RegionName"] for r in ec2.describe_regions(AllRegions=False)["Regions"]}
            off = [r for r in org.regions if r not in enabled]
            checks.append(CheckResult(
                name="regions", passed=not off, detail="all requested regions are enabled" if not off
                else f"regions not enabled in the account: {', '.join(off)}",
                remedy="" if not off else "Enable these regions (Account settings > AWS Regions) or remove them from the organisation."))  # fmt: skip
        except ClientError as e:
            checks.append(CheckResult(
                name="regions", passed=False, detail=f"ec2:DescribeRegions was refused ({error_code(e)})",
                remedy="Grant ec2:DescribeRegions (in the permission policy)."))  # fmt: skip
        result = report()
        log.info("role verified", org_id=req.org_id, passed=result.passed, failed=[c.name for c in result.failed()])
        return result

    @staticmethod
    def _role_policies(iam: Any, role_name: str) -> list[tuple[str, dict[str, Any]]]:
        docs: list[tuple[str, dict[str, Any]]] = []
        _doc = policies.parse_document

        for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
            for name in page["PolicyNames"]:
                doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
                docs.append((f"inline policy {name}", _doc(doc)))
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
            for att in page["AttachedPolicies"]:
                pol = iam.get_policy(PolicyArn=att["PolicyArn"])["Policy"]
                ver = iam.get_policy_version(PolicyArn=att["PolicyArn"], VersionId=pol["DefaultVersionId"])
                docs.append((f"managed policy {att['PolicyName']}", _doc(ver["PolicyVersion"]["Document"])))
        return docs
