"""Functional verification: prove without creating anything (ValidateTemplate, a dry-run
launch, the policy simulation). An emulator's success proves nothing and is reported
``not-proved``."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from activities.errors import error_code
from activities.verification.context import Context, _raise_if_transient
from bridgehead import ids, policies
from bridgehead.models import CheckResult

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
