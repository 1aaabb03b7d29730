"""Customers trust a dedicated platform role, never an account root (issue #18): the embedded
stack's worker runs as the role ``bridgehead-platform``, as a production worker runs with its
instance or task role, and every organisation's trust policy names that role."""

from __future__ import annotations

import pytest

from activities.aws import principal_of
from bridgehead import models as m
from starter.local import PLATFORM_ACCOUNT, PLATFORM_ROLE
from tests.integration.helpers import start_org

pytestmark = pytest.mark.integration
ROLE = f"arn:aws:iam::{PLATFORM_ACCOUNT}:role/{PLATFORM_ROLE}"


def test_caller_identities_map_to_their_principal():
    assert (
        principal_of(f"arn:aws:sts::{PLATFORM_ACCOUNT}:assumed-role/{PLATFORM_ROLE}/worker") == ROLE
    )
    assert (
        principal_of(f"arn:aws:iam::{PLATFORM_ACCOUNT}:user/ops")
        == f"arn:aws:iam::{PLATFORM_ACCOUNT}:user/ops"
    )
    assert (
        principal_of("arn:aws-cn:sts::111111111111:assumed-role/r/s")
        == "arn:aws-cn:iam::111111111111:role/r"
    )


async def test_every_trust_policy_names_the_platform_role(client, stack):
    assert stack.worker_keys and stack.worker_keys["aws_access_key_id"].startswith("ASIA"), (
        "the worker runs as a role session"
    )
    h = await start_org(client, "trustrole", "281000000001", ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)
    for _ in range(50):
        if s.artifacts:
            break
        s = await h.query("status", result_type=m.OrgStatus)
    assert s.artifacts is not None
    assert s.artifacts.platform_principal_arn == ROLE
    principals = [st["Principal"]["AWS"] for st in s.artifacts.trust_policy["Statement"]]
    assert principals == [ROLE] and not any(p.endswith(":root") for p in principals)
