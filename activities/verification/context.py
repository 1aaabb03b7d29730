"""What the verification checks share: the :class:`Context` (request, org, platform principal,
the assumed session) and the rule that a transient AWS error proves nothing about the role."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from activities.aws import Aws, OrgRecord
from activities.errors import THROTTLING_CODES, TRANSIENT_CODES, error_code
from bridgehead.models import CheckResult, VerifyRoleInput, parse_role_arn


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
