"""Verification of a customer role, one function per check, grouped by family.

``OnboardingActivities.verify_role`` (the activity) calls :func:`verify`. Each check returns
``CheckResult`` s that name what failed and how to fix it; the policy analysis itself lives in the
pure modules ``bridgehead.policies`` and ``bridgehead.verification`` (tested without AWS).

Families: :mod:`~activities.verification.identity` (account, assume, trust, External ID probe),
:mod:`~activities.verification.grants` (permissions, node roles, regions),
:mod:`~activities.verification.functional` (ValidateTemplate, dry-run launch, simulation); what
they share is :mod:`~activities.verification.context`. Every check stays importable from here.
"""

from __future__ import annotations

from activities.verification.context import Context
from activities.verification.functional import (
    EMULATOR_LIMITS,
    check_dry_run_launch,
    check_simulation,
    check_validate_template,
)
from activities.verification.grants import (
    check_node_role_grants,
    check_node_roles,
    check_permissions,
    check_regions,
    role_policies,
)
from activities.verification.identity import (
    check_account,
    check_assume,
    check_external_id_probe,
    check_trust,
    get_trust,
)
from bridgehead.logging import get_logger
from bridgehead.models import VerificationReport

__all__ = [
    "EMULATOR_LIMITS",
    "Context",
    "check_account",
    "check_assume",
    "check_dry_run_launch",
    "check_external_id_probe",
    "check_node_role_grants",
    "check_node_roles",
    "check_permissions",
    "check_regions",
    "check_simulation",
    "check_trust",
    "check_validate_template",
    "get_trust",
    "role_policies",
    "verify",
]

log = get_logger("bridgehead.activities.verification")


def verify(ctx: Context) -> VerificationReport:
    """Run every check in order; stop early only when the role cannot be assumed at all."""
    if check_account(ctx) and check_assume(ctx):
        check_trust(ctx)
        check_external_id_probe(ctx)
        check_permissions(ctx)
        check_node_roles(ctx)
        check_node_role_grants(ctx)
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
