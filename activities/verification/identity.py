"""Checks of the role's identity and trust: the right account, assumable with the External ID
(retried while IAM propagates a fresh role), a trust policy that names only the platform principal,
and the confused-deputy probe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from activities.errors import error_code
from activities.verification.context import Context, _code, _raise_if_transient
from bridgehead import policies
from bridgehead import verification as v
from bridgehead.models import CheckResult


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
    ctx.session = ctx.aws.session_for(creds)
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
