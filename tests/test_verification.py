"""Pure tests of the role verifier's checks (bridgehead/verification.py): an adversarial corpus
of trust and permission shapes, each of which must fail the named check; the shapes that must
pass; verification levels; and the IAM-propagation retry with a fake clock."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from bridgehead import policies
from bridgehead import verification as v

PLATFORM = "arn:aws:iam::123456789012:role/bridgehead-platform"
EXT = "bh-" + "e" * 43
GOOD = policies.trust_policy(PLATFORM, EXT)
OK_COND = {"StringEquals": {"sts:ExternalId": EXT}}


def with_statement(**st) -> dict:
    doc = copy.deepcopy(GOOD)
    doc["Statement"].append({"Effect": "Allow", **st})
    return doc


def replaced(**changes) -> dict:
    doc = copy.deepcopy(GOOD)
    doc["Statement"][0].update(changes)
    for k, val in list(changes.items()):
        if val is None:
            del doc["Statement"][0][k]
    return doc


def failed(doc: dict) -> dict[str, str]:
    return {c.name: c.detail for c in v.analyse_trust(doc, PLATFORM, EXT) if not c.passed}


#: (case, trust policy, the check that must fail, text its detail must contain)
UNSAFE_TRUST = [
    # The two examples.
    (
        "NotAction beside a correct statement",
        with_statement(Principal={"AWS": "*"}, NotAction="s3:GetObject"),
        v.TRUST_NOT_ACTION,
        "NotAction",
    ),
    (
        "NotAction beside a correct statement (principal)",
        with_statement(Principal={"AWS": "*"}, NotAction="s3:GetObject"),
        v.TRUST_PRINCIPAL,
        "AWS:*",
    ),
    (
        "NotAction beside a correct statement (external id)",
        with_statement(Principal={"AWS": "*"}, NotAction="s3:GetObject"),
        v.TRUST_EXTERNAL_ID,
        "no sts:ExternalId",
    ),
    (
        "unconditioned web identity",
        with_statement(
            Principal={"Federated": "cognito-identity.amazonaws.com"},
            Action="sts:AssumeRoleWithWebIdentity",
        ),
        v.TRUST_FEDERATED,
        "sts:AssumeRoleWithWebIdentity",
    ),
    (
        "web identity from an OIDC provider",
        with_statement(
            Principal={
                "Federated": "arn:aws:iam::222222222222:oidc-provider/token.actions.githubusercontent.com"
            },
            Action="sts:AssumeRoleWithWebIdentity",
        ),
        v.TRUST_FEDERATED,
        "oidc-provider",
    ),
    (
        "SAML federation",
        with_statement(
            Principal={"Federated": "arn:aws:iam::222222222222:saml-provider/corp"},
            Action="sts:AssumeRoleWithSAML",
        ),
        v.TRUST_FEDERATED,
        "sts:AssumeRoleWithSAML",
    ),
    (
        "sts:* from the platform",
        replaced(Action="sts:*"),
        v.TRUST_FEDERATED,
        "AssumeRoleWithWebIdentity",
    ),
    ("Action * from the platform", replaced(Action="*"), v.TRUST_FEDERATED, "AssumeRoleWithSAML"),
    (
        "wildcard principal with External ID",
        replaced(Principal={"AWS": "*"}),
        v.TRUST_PRINCIPAL,
        "AWS:*",
    ),
    ('Principal "*" string', replaced(Principal="*"), v.TRUST_PRINCIPAL, "trusts *"),
    (
        "another account's root",
        with_statement(
            Principal={"AWS": "arn:aws:iam::999999999999:root"},
            Action="sts:AssumeRole",
            Condition=OK_COND,
        ),
        v.TRUST_PRINCIPAL,
        "999999999999",
    ),
    (
        "a bare account id",
        with_statement(
            Principal={"AWS": "999999999999"}, Action="sts:AssumeRole", Condition=OK_COND
        ),
        v.TRUST_PRINCIPAL,
        "999999999999",
    ),
    (
        "platform account root instead of the platform role",
        replaced(Principal={"AWS": "arn:aws:iam::123456789012:root"}),
        v.TRUST_PRINCIPAL,
        "123456789012:root",
    ),
    (
        "platform role plus another in one list",
        replaced(Principal={"AWS": [PLATFORM, "arn:aws:iam::999999999999:role/x"]}),
        v.TRUST_PRINCIPAL,
        "role/x",
    ),
    (
        "a service principal",
        with_statement(Principal={"Service": "ec2.amazonaws.com"}, Action="sts:AssumeRole"),
        v.TRUST_PRINCIPAL,
        "Service:ec2",
    ),
    (
        "NotPrincipal",
        with_statement(
            NotPrincipal={"AWS": "arn:aws:iam::999999999999:root"},
            Action="sts:AssumeRole",
            Condition=OK_COND,
        ),
        v.TRUST_NOT_PRINCIPAL,
        "NotPrincipal",
    ),
    ("no External ID", replaced(Condition=None), v.TRUST_EXTERNAL_ID, "no sts:ExternalId"),
    (
        "External ID by StringLike",
        replaced(Condition={"StringLike": {"sts:ExternalId": "*"}}),
        v.TRUST_EXTERNAL_ID,
        "another operator",
    ),
    (
        "External ID IfExists",
        replaced(Condition={"StringEqualsIfExists": {"sts:ExternalId": EXT}}),
        v.TRUST_EXTERNAL_ID,
        "another operator",
    ),
    (
        "another External ID",
        replaced(Condition={"StringEquals": {"sts:ExternalId": "bh-other"}}),
        v.TRUST_EXTERNAL_ID,
        "different External ID",
    ),
    (
        "External ID among others",
        replaced(Condition={"StringEquals": {"sts:ExternalId": [EXT, "bh-other"]}}),
        v.TRUST_EXTERNAL_ID,
        "different External ID",
    ),
    (
        "second platform statement without External ID",
        with_statement(Principal={"AWS": PLATFORM}, Action="sts:AssumeRole"),
        v.TRUST_EXTERNAL_ID,
        "no sts:ExternalId",
    ),
    (
        "no AssumeRole at all",
        replaced(Action="sts:TagSession"),
        v.TRUST_PRINCIPAL,
        "no sts:AssumeRole at all",
    ),
    (
        "platform may also do other things",
        replaced(Action=["sts:AssumeRole", "s3:GetObject"]),
        v.TRUST_PRINCIPAL,
        "s3:GetObject",
    ),
]


@pytest.mark.parametrize("case,doc,check,needle", UNSAFE_TRUST, ids=[c[0] for c in UNSAFE_TRUST])
def test_unsafe_trust_fails_the_named_check(case, doc, check, needle):
    checks = {c.name: c for c in v.analyse_trust(doc, PLATFORM, EXT)}
    assert not checks[check].passed, f"{case}: {check} passed"
    assert needle in checks[check].detail, checks[check].detail
    assert checks[check].remedy, "every failed check names its fix"


@pytest.mark.parametrize(
    "case,doc",
    [
        ("the published trust policy", GOOD),
        (
            "plus a Deny",
            with_statement(Effect="Deny", Principal={"AWS": "*"}, Action="sts:AssumeRole"),
        ),
        (
            "plus TagSession by the platform",
            with_statement(Principal={"AWS": PLATFORM}, Action="sts:TagSession"),
        ),
        (
            "extra narrowing condition",
            replaced(
                Condition={
                    "StringEquals": {"sts:ExternalId": EXT},
                    "Bool": {"aws:SecureTransport": "true"},
                }
            ),
        ),
        ("principal as a one-item list", replaced(Principal={"AWS": [PLATFORM]})),
    ],
)
def test_safe_trust_passes(case, doc):
    assert failed(doc) == {}, case


# --- permissions: excess grants -----------------------------------------------------------------------
REQUIRED = policies.required_actions(
    policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
)
PUBLISHED = (
    "inline policy bridgehead-permissions",
    policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012"),
)
ADMIN = (
    "managed policy AdministratorAccess",
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
)


def test_the_published_policy_grants_nothing_in_excess():
    assert v.excess_grants([PUBLISHED], REQUIRED) == {}
    assert v.excess_check({}, "strict").passed


@pytest.mark.parametrize(
    "case,extra,expect",
    [
        ("AdministratorAccess", ADMIN, "*"),
        (
            "a service wildcard",
            (
                "inline policy extra",
                {"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]},
            ),
            "ec2:DeleteVolume",
        ),
        (
            "a pattern",
            (
                "inline policy extra",
                {"Statement": [{"Effect": "Allow", "Action": "iam:Create*", "Resource": "*"}]},
            ),
            "iam:CreateUser",
        ),
        (
            "NotAction",
            (
                "managed policy PowerUser",
                {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]},
            ),
            "NotAction ['iam:*']",
        ),
        (
            "one extra action",
            (
                "inline policy extra",
                {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]},
            ),
            "s3:GetObject",
        ),
    ],
)
def test_excess_grants_are_reported_per_action_and_fail_under_strict(case, extra, expect):
    excess = v.excess_grants([PUBLISHED, extra], REQUIRED)
    assert expect in excess, (case, sorted(excess)[:20])
    assert extra[0] in excess[expect]
    strict = v.excess_check(excess, "strict")
    shown = (
        expect if len(excess) <= 60 else extra[1]["Statement"][0]["Action"]
    )  # long lists show the pattern
    assert not strict.passed and shown in strict.detail and "AdministratorAccess" in strict.remedy
    warn = v.excess_check(excess, "warn")
    assert warn.passed and warn.warning and warn.detail == strict.detail


def test_wildcards_covering_only_required_actions_are_not_excess():
    narrow = (
        "inline policy narrow",
        {"Statement": [{"Effect": "Allow", "Action": "cloudformation:Describe*", "Resource": "*"}]},
    )
    excess = v.excess_grants([PUBLISHED, narrow], REQUIRED)
    # DescribeStacks etc. are required; other Describe* calls are reported, one per action.
    assert "cloudformation:DescribeStacks" not in excess
    assert "cloudformation:DescribeStackSet" in excess


def test_node_role_trust_must_be_ec2_only():
    assert v.node_trust_ok(policies.NODE_ROLE_TRUST)
    bad = copy.deepcopy(policies.NODE_ROLE_TRUST)
    bad["Statement"][0]["Principal"] = {
        "Service": ["ec2.amazonaws.com"],
        "AWS": "arn:aws:iam::999999999999:root",
    }
    assert not v.node_trust_ok(bad)
    bad["Statement"][0]["Principal"] = {"AWS": "*"}
    assert not v.node_trust_ok(bad)


# --- IAM propagation ------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += timedelta(seconds=s)


class Denied(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


def flaky(failures: int, code: str = "AccessDenied"):
    calls = {"n": 0}

    def attempt() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise Denied(code)
        return "creds"

    return attempt, calls


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidClientTokenId"])
def test_a_fresh_role_is_retried_with_backoff_until_iam_propagates(code):
    clock = Clock()
    attempt, calls = flaky(4, code)
    result, n = v.retry_while_propagating(
        attempt, lambda e: e.code, clock.t - timedelta(seconds=10), clock.now, clock.sleep
    )
    assert (result, n, calls["n"]) == ("creds", 5, 5)
    assert clock.sleeps == [2, 4, 8, 16], "exponential backoff"


def test_a_fresh_role_that_never_works_fails_after_two_minutes():
    clock = Clock()
    start = clock.t
    attempt, calls = flaky(10_000)
    with pytest.raises(Denied):
        v.retry_while_propagating(
            attempt, lambda e: e.code, start - timedelta(seconds=5), clock.now, clock.sleep
        )
    assert clock.t - start == timedelta(minutes=2), "retried for exactly the two-minute budget"
    assert max(clock.sleeps) <= 20 and calls["n"] >= 8


def test_an_old_role_or_another_error_is_not_retried():
    clock = Clock()
    attempt, calls = flaky(1)
    with pytest.raises(Denied):
        v.retry_while_propagating(
            attempt, lambda e: e.code, clock.t - timedelta(hours=1), clock.now, clock.sleep
        )
    assert calls["n"] == 1 and clock.sleeps == []
    attempt, calls = flaky(1, "NoSuchEntity")
    with pytest.raises(Denied):
        v.retry_while_propagating(attempt, lambda e: e.code, clock.t, clock.now, clock.sleep)
    assert calls["n"] == 1
    attempt, calls = flaky(1)
    with pytest.raises(Denied):
        v.retry_while_propagating(attempt, lambda e: e.code, None, clock.now, clock.sleep)
    assert calls["n"] == 1


def test_trust_fix_is_the_exact_published_policy():
    detail = {c.name: c for c in v.analyse_trust(replaced(Principal={"AWS": "*"}), PLATFORM, EXT)}[
        v.TRUST_PRINCIPAL
    ]
    assert json.dumps(policies.trust_policy(PLATFORM, EXT)) in detail.remedy


def test_verify_role_wiring_retries_a_fresh_role_then_reports_the_attempts(monkeypatch):
    """activities/verification/identity.check_assume: a role submitted seconds ago that STS refuses twice
    (not propagated yet) passes assume-role on the third attempt; a role recorded an hour ago that
    STS refuses fails at once, naming the fix."""
    from botocore.exceptions import ClientError

    import activities.verification as av
    from activities.aws import OrgRecord

    class FakeSession:
        def __init__(self, **creds: str) -> None:
            assert creds == {
                "aws_access_key_id": "k",
                "aws_secret_access_key": "s",
                "aws_session_token": "t",
            }

        def client(self, service: str, region_name: str | None = None):  # noqa: ANN201
            class Sts:
                @staticmethod
                def get_caller_identity() -> dict:
                    return {"Account": "222222222222"}

            return Sts()

    class FakeAws:
        settings = type("S", (), {"platform_region": "us-east-1"})()

        def __init__(self, refusals: int) -> None:
            self.refusals, self.calls = refusals, 0

        def assume(self, role_arn: str, external_id: str | None, session_name: str) -> dict:
            self.calls += 1
            if self.calls <= self.refusals:
                raise ClientError(
                    {"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "AssumeRole"
                )
            return {
                "aws_access_key_id": "k",
                "aws_secret_access_key": "s",
                "aws_session_token": "t",
            }

        def session_for(self, creds: dict[str, str]) -> FakeSession:
            return FakeSession(**creds)

    org = OrgRecord("acme", "222222222222", EXT, None, "", "", ["us-east-1"], "VERIFYING")
    req = m_verify_input()
    slept: list[float] = []
    fresh = av.Context(
        req=req, org=org, principal=PLATFORM, aws=FakeAws(2), role_changed_at=datetime.now(UTC)
    )  # type: ignore[arg-type]
    assert av.check_assume(fresh, sleep=slept.append)
    assert fresh.aws.calls == 3 and slept == [2, 4]
    assert "after 3 attempts" in fresh.checks[-1].detail and fresh.checks[-1].passed
    old = av.Context(
        req=req,
        org=org,
        principal=PLATFORM,
        aws=FakeAws(2),
        role_changed_at=datetime.now(UTC) - timedelta(hours=1),
    )  # type: ignore[arg-type]
    assert not av.check_assume(old, sleep=slept.append)
    assert (
        old.aws.calls == 1
        and "AccessDenied" in old.checks[-1].detail
        and EXT in old.checks[-1].remedy
    )


def m_verify_input():  # noqa: ANN201
    from bridgehead import models as m

    return m.VerifyRoleInput(
        org_id="acme", role_arn="arn:aws:iam::222222222222:role/BridgeheadAccess"
    )


# --- functional verification (fakes: proved / not-proved / failed) ----------------------------------------
class FakeClient:
    def __init__(
        self, endpoint: str, error: str | None = None, results: list | None = None
    ) -> None:
        self.meta = type("Meta", (), {"endpoint_url": endpoint})()
        self.error, self.results, self.calls = error, results or [], []

    def _maybe_fail(self, op: str) -> None:
        from botocore.exceptions import ClientError

        if self.error:
            raise ClientError(
                {
                    "Error": {"Code": self.error, "Message": "m"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                op,
            )

    def run_instances(self, **kw) -> dict:
        self.calls.append(kw)
        self._maybe_fail("RunInstances")
        return {}

    def validate_template(self, **kw) -> dict:
        self._maybe_fail("ValidateTemplate")
        return {}

    def get_paginator(self, name: str):  # noqa: ANN201
        outer = self

        class P:
            def paginate(self, **kw):  # noqa: ANN201
                outer._maybe_fail("SimulatePrincipalPolicy")
                yield {
                    "EvaluationResults": [
                        r for r in outer.results if r["EvalActionName"] in kw["ActionNames"]
                    ]
                }

        return P()


def functional_ctx(client: FakeClient, foundation: bool = True):  # noqa: ANN201
    import activities.verification as av
    from activities.aws import OrgRecord

    class Reg:
        def foundation(self, org, region):  # noqa: ANN001, ANN201
            return (
                {
                    "state": "READY",
                    "outputs": {
                        "PrivateSubnetId": "subnet-1",
                        "ComputeSecurityGroupId": "sg-1",
                        "InstanceProfileName": "bridgehead-acme--node-us-east-1",
                    },
                }
                if foundation
                else None
            )

        def image_share(self, org, region):  # noqa: ANN001, ANN201
            return {"state": "SHARED", "image_id": "ami-1"}

    class Session:
        def client(self, service, region_name=None, config=None):  # noqa: ANN001, ANN201
            return client

    aws = type(
        "A",
        (),
        {
            "settings": type("S", (), {"platform_region": "us-east-1"})(),
            "platform_account": lambda self: "123456789012",
        },
    )()
    org = OrgRecord("acme", "222222222222", EXT, None, "", "", ["us-east-1"], "READY")
    return av, av.Context(
        req=m_verify_input(),
        org=org,
        principal=PLATFORM,
        aws=aws,
        registry=Reg(),
        session=Session(),
    )  # type: ignore[arg-type]


AWS_EC2 = "https://ec2.us-east-1.amazonaws.com"
MOTO = "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    "endpoint,error,foundation,outcome",
    [
        (AWS_EC2, "DryRunOperation", True, ("probe", True)),
        (AWS_EC2, "UnauthorizedOperation", True, ("probe", False)),
        (MOTO, "DryRunOperation", True, ("not-proved", True)),
        (MOTO, "UnauthorizedOperation", True, ("probe", False)),
        (AWS_EC2, "DryRunOperation", False, ("not-proved", True)),
        (AWS_EC2, "InvalidAMIID.NotFound", True, ("not-proved", True)),
    ],
)
def test_dry_run_launch_reports_proved_not_proved_or_failed(endpoint, error, foundation, outcome):
    client = FakeClient(endpoint, error)
    av, ctx = functional_ctx(client, foundation)
    av.check_dry_run_launch(ctx)
    c = ctx.checks[-1]
    assert (c.method, c.passed) == outcome, c
    if foundation:
        call = client.calls[0]
        assert (
            call["DryRun"] is True
            and call["SubnetId"] == "subnet-1"
            and call["MetadataOptions"]["HttpTokens"] == "required"
        )
        assert {"Key": "bridgehead:org", "Value": "acme"} in call["TagSpecifications"][0]["Tags"]
    else:
        assert client.calls == [] and "first verification" in c.detail


def test_simulation_fails_on_an_scp_deny_and_proves_only_on_aws():
    from bridgehead import policies as p

    required = p.required_actions(
        p.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
    )
    allowed = [{"EvalActionName": a, "EvalDecision": "allowed"} for a in required]
    av, ctx = functional_ctx(FakeClient("https://iam.amazonaws.com", results=allowed))
    av.check_simulation(ctx)
    assert (ctx.checks[-1].method, ctx.checks[-1].passed) == ("probe", True)
    scp = [dict(r) for r in allowed]
    scp[3].update(
        EvalDecision="explicitDeny", OrganizationsDecisionDetail={"AllowedByOrganizations": False}
    )
    av, ctx = functional_ctx(FakeClient("https://iam.amazonaws.com", results=scp))
    av.check_simulation(ctx)
    assert (
        not ctx.checks[-1].passed
        and required[3] in ctx.checks[-1].detail
        and "SCP" in ctx.checks[-1].remedy
    )
    av, ctx = functional_ctx(FakeClient(MOTO, results=allowed))
    av.check_simulation(ctx)
    assert ctx.checks[-1].method == "not-proved"
    av, ctx = functional_ctx(FakeClient(MOTO, error="NotImplemented"))
    av.check_simulation(ctx)
    assert ctx.checks[-1].method == "not-proved" and "not available" in ctx.checks[-1].detail


def test_pass_role_granted_beyond_the_node_role_is_an_excess_grant():
    published = PUBLISHED[1]
    assert v.widened_grants([PUBLISHED], published) == {}
    wide = copy.deepcopy(published)
    for st in wide["Statement"]:
        if st["Sid"] == "PassOnlyTheClusterRoleToEc2":
            st["Resource"] = "*"
    found = v.widened_grants([("inline policy bridgehead-permissions", wide)], published)
    assert list(found) == ["iam:PassRole on *"] and "node-*" in found["iam:PassRole on *"]
    unconditioned = copy.deepcopy(published)
    for st in unconditioned["Statement"]:
        if st["Sid"] == "PassOnlyTheClusterRoleToEc2":
            del st["Condition"]
    assert list(v.widened_grants([("p", unconditioned)], published)) == [
        "iam:PassRole on arn:aws:iam::222222222222:role/bridgehead-acme--node-*"
    ]
    admin = v.widened_grants([PUBLISHED, ADMIN], published)
    assert "iam:PassRole on *" in admin and "iam:CreateServiceLinkedRole on *" in admin
    assert not v.excess_check(admin, "strict").passed
