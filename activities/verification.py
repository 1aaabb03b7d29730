"""Verification of a customer role, one function per check.

``OnboardingActivities.verify_role`` (the activity) calls :func:`verify`. Each check returns
``CheckResult`` s that name what failed and how to fix it; the policy analysis itself lives in the
pure modules ``bridgehead.policies`` and ``bridgehead.verification`` (tested without AWS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from activities.aws import Aws, OrgRecord
from activities.errors import THROTTLING_CODES, TRANSIENT_CODES, error_code
from bridgehead import ids, policies
from bridgehead import verification as v
from bridgehead.logging import get_logger
from bridgehead.models import CheckResult, VerificationReport, VerifyRoleInput, parse_role_arn

log = get_logger("bridgehead.activities.verification")


@dataclass
class Context:
    """What the checks share: the request, the org, the platform principal and (once assumed)
    a session acting as the role. Credentials never leave this object (nor the activity)."""

    req: VerifyRoleInput
    org: OrgRecord
    principal: str
    aws: Aws
    role_changed_at: datetime | None = None
    registry: Any = None
    session: Any = None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def arn(self) -> dict[str, str]:
        return parse_role_arn(self.req.role_arn)

    def client(self, service: str, region: str | None = None) -> Any:
        return self.session.client(service, region_name=region or self.aws.settings.platform_region)

    def add(self, *checks: CheckResult) -> None:
        self.checks.extend(checks)

    def has_passed(self, name: str) -> bool:
        return any(c.name == name and c.passed for c in self.checks)


def _code(e: Exception) -> str | None:
    return error_code(e) if isinstance(e, ClientError) else None


def _raise_if_transient(e: ClientError) -> None:
    """Throttling and AWS-side errors prove nothing about the role: let the activity retry
    (recorded by Temporal) instead of failing a check."""
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if error_code(e) in THROTTLING_CODES | TRANSIENT_CODES or status >= 500:
        raise e


# --- the checks --------------------------------------------------------------------------------
def check_account(ctx: Context) -> bool:
    account = ctx.arn["account"]
    if account == ctx.org.aws_account_id:
        return True
    ctx.add(
        CheckResult(
            name="role-account",
            passed=False,
            detail=f"the role is in account {account}, the organisation is account {ctx.org.aws_account_id}",
            remedy=f"Create the role in account {ctx.org.aws_account_id} and submit its ARN.",
        )
    )
    return False


def check_assume(ctx: Context, sleep: Any = None) -> bool:
    """Assume the role with the External ID. A role created or submitted in the last few minutes
    that STS refuses (AccessDenied / InvalidClientTokenId: IAM has not propagated it yet) is retried
    with backoff for up to two minutes before the check fails."""
    import time

    from temporalio import activity

    def pause(seconds: float) -> None:
        if activity.in_activity():
            activity.heartbeat(f"waiting {seconds:.0f}s for IAM to propagate the role")
        (sleep or time.sleep)(seconds)

    try:
        creds, attempts = v.retry_while_propagating(
            lambda: ctx.aws.assume(
                ctx.req.role_arn, ctx.org.external_id, f"bridgehead-verify-{ctx.req.org_id}"
            ),
            _code,
            ctx.role_changed_at,
            lambda: datetime.now(UTC),
            pause,
        )
    except ClientError as e:
        _raise_if_transient(e)
        waited = (
            " (retried for two minutes while IAM propagated the new role)" if _fresh(ctx) else ""
        )
        ctx.add(
            CheckResult(
                name="assume-role",
                passed=False,
                detail=f"sts:AssumeRole with the External ID failed: {error_code(e)}{waited}",
                remedy=f"Make sure role {ctx.req.role_arn} exists and its trust policy allows {ctx.principal} "
                f"with sts:ExternalId {ctx.org.external_id}.",
            )
        )
        return False
    ctx.session = boto3.session.Session(**creds)
    del creds
    whoami = ctx.client("sts").get_caller_identity()
    ok = whoami["Account"] == ctx.org.aws_account_id
    retried = f" (after {attempts} attempts while IAM propagated the role)" if attempts > 1 else ""
    ctx.add(
        CheckResult(
            name="assume-role",
            passed=ok,
            detail=f"assumed {ctx.req.role_arn} with the External ID{retried}; acting as account {whoami['Account']}",
            remedy="" if ok else f"The role must live in account {ctx.org.aws_account_id}.",
        )
    )
    return ok


def _fresh(ctx: Context) -> bool:
    return (
        ctx.role_changed_at is not None
        and datetime.now(UTC) - ctx.role_changed_at < v.PROPAGATION_WINDOW
    )


def get_trust(iam: Any, role_name: str) -> dict[str, Any]:
    return policies.parse_document(
        iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    )


def check_trust(ctx: Context) -> None:
    """Read the trust policy through the role itself and check every Allow statement."""
    try:
        trust = get_trust(ctx.client("iam"), ctx.arn["name"])
    except ClientError as e:
        _raise_if_transient(e)
        ctx.add(
            CheckResult(
                name="trust-policy-readable",
                passed=False,
                method="probe",
                detail=f"iam:GetRole on the role itself was refused ({error_code(e)})",
                remedy="Grant iam:GetRole on the role to itself (it is in the permission policy).",
            )
        )
        return
    ctx.add(*v.analyse_trust(trust, ctx.principal, ctx.org.external_id))


def check_external_id_probe(ctx: Context) -> None:
    """Confused-deputy probe: without the External ID, AssumeRole must be refused."""
    ext_id = ctx.org.external_id
    try:
        ctx.aws.assume(ctx.req.role_arn, None, f"bridgehead-probe-{ctx.req.org_id}")
    except ClientError as e:
        _raise_if_transient(e)
        ctx.add(
            CheckResult(
                name="external-id-required",
                passed=True,
                method="probe",
                detail=f"AssumeRole without the External ID was refused ({error_code(e)}), as it must be",
            )
        )
        return
    if ctx.aws.settings.sts_enforces_trust:
        ctx.add(
            CheckResult(
                name="external-id-required",
                passed=False,
                method="probe",
                detail="AssumeRole WITHOUT the External ID succeeded: anyone who can act as the platform principal could use this role",
                remedy=f'Add "Condition": {{"StringEquals": {{"sts:ExternalId": "{ext_id}"}}}} to the trust policy.',
            )
        )
        return
    ext_ok = ctx.has_passed(v.TRUST_EXTERNAL_ID)
    ctx.add(
        CheckResult(
            name="external-id-required",
            passed=ext_ok,
            method="not-proved",
            detail="this AWS endpoint does not enforce trust policies (emulator), so the probe proves nothing; "
            + (
                "the trust-policy analysis shows the External ID is required"
                if ext_ok
                else "and the trust policy does not require it"
            ),
            remedy="" if ext_ok else "Require the External ID in the trust policy.",
        )
    )


def role_policies(iam: Any, role_name: str) -> list[tuple[str, dict[str, Any]]]:
    """Every policy of the role: inline ones and attached managed ones (customer or AWS)."""
    docs: list[tuple[str, dict[str, Any]]] = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for name in page["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
            docs.append((f"inline policy {name}", policies.parse_document(doc)))
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for att in page["AttachedPolicies"]:
            pol = iam.get_policy(PolicyArn=att["PolicyArn"])["Policy"]
            ver = iam.get_policy_version(
                PolicyArn=att["PolicyArn"], VersionId=pol["DefaultVersionId"]
            )
            docs.append(
                (
                    f"managed policy {att['PolicyName']}",
                    policies.parse_document(ver["PolicyVersion"]["Document"]),
                )
            )
    return docs


def check_permissions(ctx: Context) -> None:
    """Every required action is granted (no Deny), and nothing beyond the required set is
    (``excess-grants``: fails under ``strict``, a warning under ``warn``)."""
    arn = ctx.arn
    try:
        docs = role_policies(ctx.client("iam"), arn["name"])
    except ClientError as e:
        _raise_if_transient(e)
        ctx.add(
            CheckResult(
                name="permissions",
                passed=False,
                method="probe",
                detail=f"could not read the role's policies ({error_code(e)})",
                remedy="Grant iam:ListAttachedRolePolicies, iam:ListRolePolicies, iam:GetRolePolicy, iam:GetPolicy and "
                "iam:GetPolicyVersion (in the permission policy).",
            )
        )
        return
    published = policies.permission_policy(
        ctx.req.org_id,
        ctx.org.aws_account_id,
        arn["name"],
        ctx.aws.platform_account(),
        arn["partition"],
    )
    setup = policies.required_actions(published)
    setup_only = policies.setup_only_actions()
    if ctx.req.phase == "ongoing":
        required = policies.required_actions(policies.ongoing_permission_policy(published))
    else:
        required = setup
    verdict = policies.evaluate_actions(required, docs)
    missing, later = policies.split_missing({a: why for a, why in verdict.items() if why})
    ctx.add(
        CheckResult(
            name="permissions",
            passed=not missing,
            method="analysis",
            detail=f"all {len(required)} required actions are granted"
            if not missing
            else f"{len(missing)} of {len(required)} required actions are missing: "
            + "; ".join(f"{a} ({why})" for a, why in sorted(missing.items())),
            remedy=""
            if not missing
            else "Attach the permission policy from this organisation's status (or add: "
            + ", ".join(sorted(missing))
            + ").",
        )
    )
    if later:
        ctx.add(
            CheckResult(
                name="later-permissions",
                passed=True,
                warning=True,
                method="analysis",
                detail="granted since this organisation onboarded and not attached yet: "
                + "; ".join(f"{a}, for {policies.LATER_ACTIONS[a]}" for a in sorted(later)),
                remedy="Attach the current permission policy from this organisation's status.",
            )
        )
    excess = {**v.excess_grants(docs, setup), **v.widened_grants(docs, published)}
    ctx.add(v.excess_check(excess, ctx.req.level))
    if ctx.req.phase == "ongoing" and not missing:
        absent = sorted(
            a for a, why in policies.evaluate_actions(sorted(setup_only), docs).items() if why
        )
        if absent:
            needed = sorted({setup_only[a] for a in absent})
            ctx.add(
                CheckResult(
                    name="setup-policy",
                    passed=True,
                    warning=True,
                    method="analysis",
                    detail="the ongoing policy is attached (enough for clusters); adding a region or re-creating a foundation "
                    f"needs the setup policy again, for {'; '.join(needed)} (missing: {', '.join(absent)})",
                    remedy="Attach the setup permission policy from this organisation's status before adding a region.",
                )
            )


def check_node_roles(ctx: Context) -> None:
    """The cluster node role and instance profile of each region exist (the customer's template
    creates them; Bridgehead cannot) and the role trusts EC2 only."""
    iam = ctx.client("iam")
    problems: list[str] = []
    for region in ctx.org.regions:
        name = ids.cluster_role_name(ctx.req.org_id, region)
        try:
            trust = get_trust(iam, name)
            profiles = iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]
        except ClientError as e:
            _raise_if_transient(e)
            problems.append(f"{name}: {error_code(e)}")
            continue
        if not v.node_trust_ok(trust):
            problems.append(
                f"{name}: its trust policy lets someone other than EC2 assume it ({json.dumps(trust)})"
            )
        if not any(p["InstanceProfileName"] == name for p in profiles):
            problems.append(f"{name}: no instance profile named {name} holds the role")
    ctx.add(
        CheckResult(
            name="node-roles",
            passed=not problems,
            method="probe",
            detail="every region's cluster node role and instance profile exist and trust only EC2"
            if not problems
            else "cluster node roles: " + "; ".join(problems),
            remedy=""
            if not problems
            else "Launch (or update) the role template from this organisation's status: it creates the node "
            "roles and instance profiles (node_roles in the status), each trusting only ec2.amazonaws.com.",
        )
    )


def check_regions(ctx: Context) -> None:
    try:
        enabled = {
            r["RegionName"] for r in ctx.client("ec2").describe_regions(AllRegions=False)["Regions"]
        }
    except ClientError as e:
        _raise_if_transient(e)
        ctx.add(
            CheckResult(
                name="regions",
                passed=False,
                detail=f"ec2:DescribeRegions was refused ({error_code(e)})",
                remedy="Grant ec2:DescribeRegions (in the permission policy).",
            )
        )
        return
    off = [r for r in ctx.org.regions if r not in enabled]
    ctx.add(
        CheckResult(
            name="regions",
            passed=not off,
            detail="all requested regions are enabled"
            if not off
            else f"regions not enabled in the account: {', '.join(off)}",
            remedy=""
            if not off
            else "Enable these regions (Account settings > AWS Regions) or remove them from the organisation.",
        )
    )


# --- functional verification: prove without creating anything ---------------------------------------
EMULATOR_LIMITS = (
    "this endpoint is an emulator: it does not evaluate resource ARNs, conditions, SCPs or permissions "
    "boundaries, so a success here proves nothing about AWS"
)


def _emulated(client: Any) -> bool:
    return "amazonaws.com" not in (client.meta.endpoint_url or "")


def _functional(name: str, outcome: str, detail: str, remedy: str = "") -> CheckResult:
    """``outcome``: ``proved`` (passed, method probe), ``failed`` (method probe) or ``not-proved``
    (passes: absence of proof is reported, never counted as proof)."""
    if outcome == "not-proved":
        return CheckResult(name=name, passed=True, method="not-proved", detail=detail)
    return CheckResult(
        name=name, passed=outcome == "proved", method="probe", detail=detail, remedy=remedy
    )


def check_validate_template(ctx: Context) -> None:
    """``cloudformation:ValidateTemplate`` on the foundation template (creates nothing)."""
    region = ctx.org.regions[0] if ctx.org.regions else ctx.aws.settings.platform_region
    cfn = ctx.client("cloudformation", region)
    body = policies.foundation_template(
        ctx.req.org_id,
        region,
        ctx.org.aws_account_id,
        {policies.TAG_ORG: ctx.req.org_id},
        ctx.req.role_arn,
    )
    name = "functional-validate-template"
    try:
        cfn.validate_template(TemplateBody=body)
    except ClientError as e:
        _raise_if_transient(e)
        ctx.add(
            _functional(
                name,
                "failed",
                f"cloudformation:ValidateTemplate was refused in {region} ({error_code(e)}: {e})",
                "Grant cloudformation:ValidateTemplate (in the permission policy) and check SCPs for CloudFormation.",
            )
        )
        return
    if _emulated(cfn):
        ctx.add(
            _functional(
                name, "not-proved", f"ValidateTemplate succeeded in {region}, but {EMULATOR_LIMITS}"
            )
        )
    else:
        ctx.add(
            _functional(
                name, "proved", f"the role may validate the foundation template in {region}"
            )
        )


def check_dry_run_launch(ctx: Context) -> None:
    """``ec2:RunInstances`` with ``DryRun`` (creates nothing): the shared image, in the foundation's
    private subnet, with the node profile, the org's tags and IMDSv2, as a cluster would launch."""
    name = "functional-run-instances"
    done = False
    for region in ctx.org.regions:
        foundation = (
            ctx.registry.foundation(ctx.req.org_id, region) if ctx.registry else None
        ) or {}
        image = (ctx.registry.image_share(ctx.req.org_id, region) if ctx.registry else None) or {}
        out = foundation.get("outputs") or {}
        if (
            foundation.get("state") != "READY"
            or image.get("state") != "SHARED"
            or not out.get("PrivateSubnetId")
        ):
            continue
        ec2 = ctx.client("ec2", region)
        tags = [
            {"Key": policies.TAG_ORG, "Value": ctx.req.org_id},
            {"Key": "bridgehead:kind", "Value": "verification"},
        ]
        try:
            ec2.run_instances(
                DryRun=True,
                ImageId=image["image_id"],
                InstanceType="t3.micro",
                MinCount=1,
                MaxCount=1,
                SubnetId=out["PrivateSubnetId"],
                SecurityGroupIds=[out["ComputeSecurityGroupId"]],
                IamInstanceProfile={
                    "Name": out.get("InstanceProfileName")
                    or ids.cluster_role_name(ctx.req.org_id, region)
                },
                MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": tags},
                    {"ResourceType": "volume", "Tags": tags},
                ],
            )
            outcome = ("proved", f"RunInstances (DryRun) in {region} would succeed")
        except ClientError as e:
            code = error_code(e)
            if code == "DryRunOperation":
                outcome = ("proved", f"RunInstances (DryRun) in {region} would succeed")
            elif code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
                ctx.add(
                    _functional(
                        name,
                        "failed",
                        f"RunInstances (DryRun) in {region} was refused ({code}): {e}",
                        "Grant the EC2 statements of the permission policy; check SCPs and permissions boundaries.",
                    )
                )
                return
            else:
                _raise_if_transient(e)
                ctx.add(
                    _functional(
                        name,
                        "not-proved",
                        f"RunInstances (DryRun) in {region} answered {code}: {e}",
                    )
                )
                return
        if _emulated(ec2):
            ctx.add(
                _functional(
                    name, "not-proved", f"{outcome[1]} on the emulator, but {EMULATOR_LIMITS}"
                )
            )
        else:
            ctx.add(_functional(name, *outcome))
        done = True
        break
    if not done:
        ctx.add(
            _functional(
                name,
                "not-proved",
                "no region has a READY foundation and a shared image yet (first verification); "
                "proved on the next verification",
            )
        )


def check_simulation(ctx: Context, chunk: int = 100) -> None:
    """``iam:SimulatePrincipalPolicy`` on the role for every required action: on AWS it sees SCPs
    and permissions boundaries, which no policy read can. Explicit denies fail; actions allowed are
    proved; implicit denies (resource ARNs and condition values the simulation cannot be given)
    and endpoints that do not implement the call are not-proved."""
    import botocore.config
    from botocore.exceptions import BotoCoreError
    from botocore.parsers import ResponseParserError

    name = "functional-simulation"
    arn = ctx.arn
    required = policies.required_actions(
        policies.permission_policy(
            ctx.req.org_id,
            ctx.org.aws_account_id,
            arn["name"],
            ctx.aws.platform_account(),
            arn["partition"],
        )
    )
    iam = ctx.session.client(
        "iam",
        region_name=ctx.aws.settings.platform_region,
        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    results: list[dict[str, Any]] = []
    try:
        for i in range(0, len(required), chunk):
            pages = iam.get_paginator("simulate_principal_policy").paginate(
                PolicySourceArn=ctx.req.role_arn, ActionNames=required[i : i + chunk]
            )
            for page in pages:
                results += page["EvaluationResults"]
    except (ClientError, BotoCoreError, ResponseParserError) as e:
        # An endpoint that does not implement the call (moto answers HTTP 500) proves nothing.
        why = error_code(e) if isinstance(e, ClientError) else type(e).__name__
        ctx.add(
            _functional(
                name,
                "not-proved",
                f"iam:SimulatePrincipalPolicy is not available here ({why}); SCPs and permissions "
                "boundaries were not checked",
            )
        )
        return
    denied = [
        r
        for r in results
        if r["EvalDecision"] == "explicitDeny"
        or r.get("OrganizationsDecisionDetail", {}).get("AllowedByOrganizations") is False
        or r.get("PermissionsBoundaryDecisionDetail", {}).get("AllowedByPermissionsBoundary")
        is False
    ]
    allowed = [r for r in results if r["EvalDecision"] == "allowed"]
    if denied:
        names = ", ".join(sorted(r["EvalActionName"] for r in denied))
        ctx.add(
            _functional(
                name,
                "failed",
                f"{len(denied)} required action(s) are denied by an SCP, a permissions boundary or a Deny: {names}",
                "Exempt the Bridgehead role from the denying SCP or boundary (or remove the Deny).",
            )
        )
    elif _emulated(iam):
        ctx.add(
            _functional(
                name, "not-proved", f"simulation answered on the emulator, but {EMULATOR_LIMITS}"
            )
        )
    else:
        ctx.add(
            _functional(
                name,
                "proved" if len(allowed) == len(results) else "not-proved",
                f"simulated {len(results)} actions: {len(allowed)} allowed, {len(results) - len(allowed)} depend on "
                "resource ARNs or conditions the simulation cannot be given; none denied by an SCP or boundary",
            )
        )


def verify(ctx: Context) -> VerificationReport:
    """Run every check in order; stop early only when the role cannot be assumed at all."""
    if check_account(ctx) and check_assume(ctx):
        check_trust(ctx)
        check_external_id_probe(ctx)
        check_permissions(ctx)
        check_node_roles(ctx)
        check_regions(ctx)
        check_validate_template(ctx)
        check_dry_run_launch(ctx)
        check_simulation(ctx)
    report = VerificationReport(
        org_id=ctx.req.org_id,
        role_arn=ctx.req.role_arn,
        passed=all(c.passed for c in ctx.checks),
        checks=ctx.checks,
    )
    log.info(
        "role verified",
        org_id=ctx.req.org_id,
        passed=report.passed,
        failed=[c.name for c in report.failed()],
        warnings=[c.name for c in report.warnings()],
    )
    return report
