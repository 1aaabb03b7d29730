"""The excess-grants check compares the scope (resources and conditions) of every published action,
not only iam:PassRole (bridgehead/policy_scope.py): the published policy passes; the policy of
/work/review/widen.py (every Resource and Condition stripped except PassRole's and
CreateServiceLinkedRole's) fails per action; narrower statements pass; a missing or looser
condition fails. Each check has a planted-defect twin: the comparison as it was before this fix
(only the two scope-sensitive actions, resources compared as literal sets), a containment test
that lets a granted wildcard match the published pattern's ``?``, and a condition check that
ignores conditions."""

from __future__ import annotations

import copy
import fnmatch
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from bridgehead import policies, policy_scope
from bridgehead import verification as v

PUBLISHED = policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "111111111111")
SETUP = policies.required_actions(PUBLISHED)
#: Statements the reproduction keeps as published.
KEPT = ("PassOnlyTheClusterRoleToEc2", "AutoScalingServiceLinkedRoleOnly")
Widened = Callable[[list[tuple[str, dict[str, Any]]], dict[str, Any]], dict[str, str]]


def _acts(st: dict[str, Any]) -> list[str]:
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


def statement(sid: str, doc: dict[str, Any] = PUBLISHED) -> dict[str, Any]:
    return next(st for st in doc["Statement"] if st.get("Sid") == sid)


def widened_like_the_review() -> dict[str, Any]:
    """/work/review/widen.py: Resource "*" and no Condition everywhere except the two kept."""
    wide = copy.deepcopy(PUBLISHED)
    for st in wide["Statement"]:
        if st["Sid"] not in KEPT:
            st["Resource"] = "*"
            st.pop("Condition", None)
    return wide


#: Actions some published statement grants on "*" without a condition (any scope is published).
UNSCOPED = {
    a
    for st in PUBLISHED["Statement"]
    if st["Resource"] == "*" and "Condition" not in st
    for a in _acts(st)
}


def expected_widening(sids: list[str], resource: str = "*") -> set[str]:
    return {
        f"{a} on {resource}"
        for st in PUBLISHED["Statement"]
        if st["Sid"] in sids
        for a in _acts(st)
        if a not in UNSCOPED
    }


def _pre_fix_widened_grants(documents, published):  # type: ignore[no-untyped-def]
    """The comparison before this fix (planted defect): only two actions, resources as sets."""
    sensitive = ("iam:PassRole", "iam:CreateServiceLinkedRole")
    allowed: dict[str, list[tuple[set[str], dict[str, Any]]]] = {}
    for st in published["Statement"]:
        for a in _acts(st):
            if a in sensitive:
                allowed.setdefault(a, []).append(
                    (set(policy_scope._as_list(st.get("Resource"))), st.get("Condition") or {})
                )
    out = {}
    for source, doc in documents:
        for st in doc["Statement"]:
            if st.get("Effect") != "Allow" or "NotAction" in st:
                continue
            for action in sensitive:
                if not v.statement_allows(st, action):
                    continue
                resources = policy_scope._as_list(
                    st.get("NotResource") and ["*"] or st.get("Resource")
                )
                cond = st.get("Condition") or {}
                ok = any(
                    set(resources) <= res
                    and all(
                        cond.get(op, {}).get(k) == val
                        for op, block in pcond.items()
                        for k, val in block.items()
                    )
                    for res, pcond in allowed.get(action, [])
                )
                if not ok:
                    out[f"{action} on {', '.join(map(str, resources))}"] = source
    return out


# --- the published policy passes; the review's widened policy fails ----------------------------
def test_the_published_setup_and_ongoing_policies_are_not_widened():
    assert v.widened_grants([("inline policy p", PUBLISHED)], PUBLISHED) == {}
    ongoing = policies.ongoing_permission_policy(PUBLISHED)
    assert v.widened_grants([("inline policy p", ongoing)], PUBLISHED) == {}
    check = v.excess_check(
        {
            **v.excess_grants([("p", PUBLISHED)], SETUP),
            **v.widened_grants([("p", PUBLISHED)], PUBLISHED),
        },
        "strict",
    )
    assert (check.passed, check.warning, check.remedy) == (True, False, "")


def assert_review_widening_is_caught(widened: Widened) -> None:
    found = widened([("inline policy wide", widened_like_the_review())], PUBLISHED)
    sids = [st["Sid"] for st in PUBLISHED["Statement"] if st["Sid"] not in KEPT]
    assert set(found) == expected_widening(sids)
    for key in (
        "ec2:TerminateInstances on *",
        "cloudformation:DeleteStack on *",
        "s3:DeleteBucket on *",
        "elasticfilesystem:DeleteFileSystem on *",
    ):
        assert key in found, sorted(found)
    assert found["ec2:TerminateInstances on *"] == (
        "inline policy wide statement ChangeOnlyThisOrgsEc2Resources, beyond the published "
        "resources; published: ChangeOnlyThisOrgsEc2Resources on arn:aws:ec2:*:222222222222:*/* "
        'with {"StringEquals": {"aws:ResourceTag/bridgehead:org": "acme"}}'
    )
    assert found["kms:CreateKey on *"].startswith(
        "inline policy wide statement CreateOrgKeysTaggedAtCreation, without "
        'ForAllValues:StringLike aws:TagKeys=["aws:cloudformation:*", "bridgehead:*"] and '
        'StringEquals aws:RequestTag/bridgehead:org="acme"; published: '
    )


def test_the_review_widened_policy_fails_per_action_and_resource():
    assert_review_widening_is_caught(v.widened_grants)
    docs = [("inline policy wide", widened_like_the_review())]
    excess = {**v.excess_grants(docs, SETUP), **v.widened_grants(docs, PUBLISHED)}
    strict = v.excess_check(excess, "strict")
    assert not strict.passed and strict.detail.startswith(f"{len(excess)} action(s) granted")
    assert (
        "cloudformation:DeleteStack on * (by inline policy wide statement BridgeheadStacksOnly"
        in (strict.detail)
    )
    assert "narrow each statement named for '<action> on <resource>'" in strict.remedy
    warn = v.excess_check(excess, "warn")
    assert (warn.passed, warn.warning, warn.detail, warn.remedy) == (
        True,
        True,
        strict.detail,
        strict.remedy,
    )


def test_twin_the_pre_fix_comparison_lets_the_review_widening_pass():
    assert _pre_fix_widened_grants([("p", widened_like_the_review())], PUBLISHED) == {}
    with pytest.raises(AssertionError):
        assert_review_widening_is_caught(_pre_fix_widened_grants)


# --- resource containment ------------------------------------------------------------------------
#: (published pattern, granted pattern, covered)
CONTAINMENT = [
    ("arn:aws:s3:::bh-acme--*", "arn:aws:s3:::bh-acme--*", True),
    ("arn:aws:s3:::bh-acme--*", "arn:aws:s3:::bh-acme--logs-*", True),
    ("arn:aws:s3:::bh-acme--*", "arn:aws:s3:::bh-acme--a?c", True),
    ("arn:aws:s3:::bh-acme--*", "arn:aws:s3:::bh-acme-*", False),
    ("arn:aws:s3:::bh-acme--*", "arn:aws:s3:::bh-*", False),
    ("arn:aws:s3:::bh-acme--*", "*", False),
    ("arn:aws:ec2:*:222222222222:*/*", "arn:aws:ec2:us-east-1:222222222222:instance/i-1", True),
    ("arn:aws:ec2:*:222222222222:*/*", "arn:aws:ec2:*:*:instance/*", False),
    ("arn:aws:ec2:*:222222222222:*/*", "arn:aws:ec2:*:22222222222?:instance/*", False),
    ("*", "arn:aws:ec2:*:*:*", True),
    ("bucket-?", "bucket-a", True),
    ("bucket-?", "bucket-?", True),
    ("bucket-?", "bucket-*", False),
    ("a?c", "a*c", False),
    ("a?c", "a${aws:username}c", False),
    ("user/${aws:username}", "user/${aws:username}", True),
    ("user/${aws:username}", "user/bob", False),
    ("user/${aws:username}", "user/*", False),
    ("user/${aws:username}", "user/${aws:userid}", False),
    ("user/*", "user/${aws:username}", True),
    ("user/${aws:username}/*", "user/${aws:username}/x*", True),
]


def containment_errors(covers: Callable[[str, str], bool]) -> list[tuple[str, str, bool]]:
    return [(p, g, want) for p, g, want in CONTAINMENT if covers(p, g) != want]


def test_a_granted_pattern_is_covered_only_when_the_published_pattern_contains_it():
    assert containment_errors(policy_scope.pattern_covers) == []


def test_twin_matching_the_granted_pattern_as_a_string_is_caught():
    naive = lambda p, g: fnmatch.fnmatchcase(g, p)  # noqa: E731 - the granted * taken literally
    assert containment_errors(naive) == [
        ("bucket-?", "bucket-*", False),
        ("a?c", "a*c", False),
    ]


# --- narrower statements pass; missing or looser conditions fail -------------------------------
def with_statement(st: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("inline policy p", PUBLISHED), ("inline policy extra", {"Statement": [st]})]


def ec2_change(**changes: Any) -> dict[str, Any]:
    st = copy.deepcopy(statement("ChangeOnlyThisOrgsEc2Resources"))
    st.update(changes)
    for k in [k for k, val in changes.items() if val is None]:
        del st[k]
    return st


ORG_TAG = {"StringEquals": {"aws:ResourceTag/bridgehead:org": "acme"}}
NARROWER = [
    (
        "one region, instances only",
        ec2_change(Resource="arn:aws:ec2:us-east-1:222222222222:instance/*"),
    ),
    ("one instance", ec2_change(Resource="arn:aws:ec2:eu-west-1:222222222222:instance/i-0abc")),
    (
        "an extra condition",
        ec2_change(Condition={**ORG_TAG, "Bool": {"aws:SecureTransport": "true"}}),
    ),
    (
        "condition key in another case",
        ec2_change(Condition={"StringEquals": {"aws:resourcetag/bridgehead:org": "acme"}}),
    ),
    (
        "one bucket",
        {"Effect": "Allow", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::bh-acme--logs"},
    ),
    (
        "fewer tag keys",
        {
            **copy.deepcopy(statement("CreateOrgKeysTaggedAtCreation")),
            "Condition": {
                "StringEquals": {"aws:RequestTag/bridgehead:org": "acme"},
                "ForAllValues:StringLike": {"aws:TagKeys": ["bridgehead:*"]},
            },
        },
    ),
    (
        "a narrower tag-key pattern",
        {
            **copy.deepcopy(statement("CreateOrgKeysTaggedAtCreation")),
            "Condition": {
                "StringEquals": {"aws:RequestTag/bridgehead:org": "acme"},
                "ForAllValues:StringLike": {
                    "aws:TagKeys": ["bridgehead:org", "aws:cloudformation:stack-*"]
                },
            },
        },
    ),
    ("a Deny anywhere", {"Effect": "Deny", "Action": "*", "Resource": "*"}),
    ("read-only discovery on *", {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}),
]


@pytest.mark.parametrize("case,st", NARROWER, ids=[c for c, _ in NARROWER])
def test_a_statement_narrower_than_published_passes(case, st):
    assert v.widened_grants(with_statement(st), PUBLISHED) == {}, case


EC2_CHANGE = "arn:aws:ec2:*:222222222222:*/*"
LOOSER = [
    (
        "no condition",
        ec2_change(Condition=None),
        'without StringEquals aws:ResourceTag/bridgehead:org="acme"',
    ),
    (
        "another org's tag too",
        ec2_change(
            Condition={"StringEquals": {"aws:ResourceTag/bridgehead:org": ["acme", "beta"]}}
        ),
        "without StringEquals",
    ),
    (
        "StringLike instead of StringEquals",
        ec2_change(Condition={"StringLike": {"aws:ResourceTag/bridgehead:org": "acme"}}),
        "without StringEquals",
    ),
    (
        "IfExists",
        ec2_change(Condition={"StringEqualsIfExists": {"aws:ResourceTag/bridgehead:org": "acme"}}),
        "without StringEquals",
    ),
    (
        "another tag key",
        ec2_change(Condition={"StringEquals": {"aws:ResourceTag/owner": "acme"}}),
        "without StringEquals",
    ),
]


def condition_errors(widened: Widened) -> list[str]:
    errors = []
    for case, st, needle in LOOSER:
        found = widened(with_statement(st), PUBLISHED)
        want = {k.replace(" on *", f" on {EC2_CHANGE}") for k in expected_widening([st["Sid"]])}
        if set(found) != want or not all(needle in w for w in found.values()):
            errors.append(case)
    return errors


def test_a_statement_without_a_published_condition_fails():
    assert condition_errors(v.widened_grants) == []


def test_twin_a_comparison_that_ignores_conditions_is_caught(monkeypatch):
    monkeypatch.setattr(policy_scope, "condition_gaps", lambda published, granted: [])
    assert condition_errors(v.widened_grants) == [c for c, _, _ in LOOSER]


@pytest.mark.parametrize(
    "case,st,key",
    [
        (
            "NotResource",
            {"Effect": "Allow", "Action": "s3:DeleteBucket", "NotResource": "arn:aws:s3:::x"},
            's3:DeleteBucket on NotResource ["arn:aws:s3:::x"]',
        ),
        ("no Resource", {"Effect": "Allow", "Action": "s3:DeleteBucket"}, "s3:DeleteBucket on *"),
        (
            "another org's buckets",
            {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::bh-beta--*"},
            "s3:DeleteBucket on arn:aws:s3:::bh-beta--*",
        ),
        (
            "a second resource beside a covered one",
            {
                "Effect": "Allow",
                "Action": "s3:DeleteBucket",
                "Resource": ["arn:aws:s3:::bh-acme--a", "arn:aws:s3:::data"],
            },
            "s3:DeleteBucket on arn:aws:s3:::data",
        ),
    ],
)
def test_other_widenings_are_named(case, st, key):
    found = v.widened_grants(with_statement(st), PUBLISHED)
    assert key in found and "inline policy extra statement #1" in found[key], (case, found)
    if case == "a second resource beside a covered one":
        assert list(found) == [key]


# --- property: narrowing never fails, Resource "*" always does ---------------------------------
SCOPED_SIDS = [
    st["Sid"]
    for st in PUBLISHED["Statement"]
    if expected_widening([st["Sid"]]) and st["Resource"] != "*"
]


def narrowed(rng: random.Random, st: dict[str, Any]) -> dict[str, Any]:
    """The statement with one resource narrowed (a ``*`` replaced by a literal, maybe followed by
    ``*``) or a condition added, or both."""
    st = copy.deepcopy(st)
    how = rng.choice(["resource", "condition", "both"])
    if how in ("resource", "both"):
        res = policy_scope._as_list(st["Resource"])
        i = rng.randrange(len(res))
        stars = [k for k, ch in enumerate(res[i]) if ch == "*"]
        if stars:
            k = rng.choice(stars)
            literal = "".join(rng.choice("abcxyz019-") for _ in range(rng.randint(1, 6)))
            res[i] = res[i][:k] + literal + rng.choice(["", "*", "?"]) + res[i][k + 1 :]
        st["Resource"] = [res[i]]
    if how in ("condition", "both"):
        cond = st.setdefault("Condition", {})
        cond.setdefault("StringEquals", {})[f"aws:PrincipalTag/t{rng.randint(0, 9)}"] = "x"
    return st


def property_errors(widened: Widened, seed: int = 18, runs: int = 150) -> list[str]:
    rng = random.Random(seed)
    errors = []
    for _ in range(runs):
        st = statement(rng.choice(SCOPED_SIDS))
        narrow = narrowed(rng, st)
        if widened([("p", {"Statement": [narrow]})], PUBLISHED):
            errors.append(f"narrowed {json.dumps(narrow)} reported")
        wide = {**copy.deepcopy(st), "Resource": "*"}
        found = widened([("p", {"Statement": [wide]})], PUBLISHED)
        if set(found) != expected_widening([st["Sid"]]):
            errors.append(f"{st['Sid']} on * gave {sorted(found)}")
    return errors


def test_property_narrowing_passes_and_resource_star_fails():
    assert property_errors(v.widened_grants) == []


def test_twin_the_pre_fix_comparison_fails_the_property():
    errors = property_errors(_pre_fix_widened_grants)
    assert any(e.startswith("BridgeheadStacksOnly on * gave []") for e in errors), errors[:3]
    assert any(e.startswith("narrowed") and "node-" in e for e in errors), errors[:3]


def test_an_unreadable_condition_enforces_nothing():
    found = v.widened_grants(with_statement(ec2_change(Condition="acme")), PUBLISHED)
    assert set(found) == {
        k.replace(" on *", f" on {EC2_CHANGE}")
        for k in expected_widening(["ChangeOnlyThisOrgsEc2Resources"])
    }
