"""Exact edge cases of the pure core, written against the mutants ``make mutation`` found alive
(docs/reliability.md lists the score and what still survives): the half-up rules at exactly half
a minute and half a cent, hour boundaries of closed periods, open segments, time zones."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bridgehead import billing, policies
from bridgehead import models as m

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def seg(start: datetime, minutes: float | None, nodes: int = 2) -> m.UsageSegment:
    end = None if minutes is None else start + timedelta(minutes=minutes)
    return m.UsageSegment(
        start=start,
        end=end,
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=nodes,
    )


def test_floor_hour_is_the_utc_hour_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: a local-zone floor would land on :30 UTC
    time.tzset()
    try:
        t = datetime(2026, 11, 5, 9, 37, 42, 123456, tzinfo=timezone(timedelta(hours=2)))
        assert billing.floor_hour(t) == datetime(2026, 11, 5, 7, 0, tzinfo=UTC)
        got = billing.floor_hour(t)
        assert (got.minute, got.second, got.microsecond, got.utcoffset()) == (0, 0, 0, timedelta(0))
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [(30, 1), (29.999, 0), (90, 2), (150, 3), (210, 4), (3570, 60), (3569, 59)],
)
def test_rounded_minutes_half_up_at_exactly_half(seconds, minutes):
    assert (
        billing.rounded_minutes(seconds) == minutes
    )  # 150 s = 2.5 min: half up 3 (half even would say 2)


def test_cost_rounds_half_a_cent_up():
    assert billing.cost({"x": 60}, {"x": Decimal("0.025")}) == Decimal(
        "0.03"
    )  # half even would say 0.02
    assert billing.cost({"x": 60}, {"x": Decimal("0.015")}) == Decimal("0.02")
    assert billing.cost({}, {}) == Decimal("0.00")


def test_open_segment_is_charged_up_to_now():
    now = T0 + timedelta(minutes=95)
    s = seg(T0, None)
    assert billing.segment_minutes(s, T0, T0 + billing.PERIOD, now) == 60
    assert billing.segment_minutes(s, T0 + billing.PERIOD, T0 + 2 * billing.PERIOD, now) == 35
    assert billing.node_minutes([s], T0 + billing.PERIOD, T0 + 2 * billing.PERIOD, now) == {
        "t3.medium": 35,
        "c5.xlarge": 70,
    }


def test_periods_are_closed_hours_touched_by_a_segment():
    s = seg(T0 + timedelta(minutes=10), 100)  # 09:10 - 10:50
    # Only hours that ended by ``until``; an hour ending exactly at ``until`` is closed.
    assert billing.periods([s], T0, T0 + 2 * billing.PERIOD) == [T0, T0 + billing.PERIOD]
    assert billing.periods([s], T0, T0 + 2 * billing.PERIOD - timedelta(seconds=1)) == [T0]
    assert billing.periods([s], T0, T0 + billing.PERIOD) == [T0]
    assert billing.periods([], T0, T0 + 5 * billing.PERIOD) == []
    # A segment that starts exactly when an hour ends, or ends exactly when one starts, does not touch it.
    later = seg(T0 + billing.PERIOD, 60)  # 10:00 - 11:00
    assert billing.periods([later], T0, T0 + 4 * billing.PERIOD) == [T0 + billing.PERIOD]
    earlier = seg(T0 - billing.PERIOD, 60)  # 08:00 - 09:00
    assert billing.periods([earlier], T0, T0 + 4 * billing.PERIOD) == []
    # An open segment touches every closed hour since it started; a closed one only its own.
    assert billing.periods([seg(T0, None)], T0, T0 + 3 * billing.PERIOD) == [
        T0,
        T0 + billing.PERIOD,
        T0 + 2 * billing.PERIOD,
    ]
    assert billing.periods(
        [seg(T0 + 3 * billing.PERIOD, 30), seg(T0, 30)], T0, T0 + 5 * billing.PERIOD
    ) == [T0, T0 + 3 * billing.PERIOD]


@pytest.mark.parametrize(
    ("arn", "partition"),
    [
        ("arn:aws:iam::123456789012:root", "aws"),
        ("arn:aws-cn:iam::123456789012:role/x", "aws-cn"),
        ("arn:aws-us-gov:iam::123456789012:user/u", "aws-us-gov"),
        ("123456789012", "aws"),
    ],
)
def test_partition_of(arn, partition):
    assert policies.partition_of(arn) == partition


P = "arn:aws:iam::123456789012:root"
EXT_OK = {"StringEquals": {"sts:ExternalId": "ext"}}
ADD_EXT = 'Add "Condition": {"StringEquals": {"sts:ExternalId": "ext"}} to the trust policy.'


def stmt(principal: object = None, condition: object = EXT_OK, **extra: object) -> dict:
    st = {"Effect": "Allow", "Action": "sts:AssumeRole", **extra}
    if principal is not None:
        st["Principal"] = principal
    if condition is not None:
        st["Condition"] = condition
    return st


TAGS = {"bridgehead:org": "acme", "bridgehead:cluster": "c1"}


def test_cluster_template_tags_every_node_exactly():
    import json

    text = policies.cluster_template("acme", "c1", TAGS)
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True)  # stable text (diffable)
    assert "{{" not in text and "bridgehead-acme--" in text and "c1" in text
    res = json.loads(text)["Resources"]
    tag = lambda **kw: [{"Key": k, "Value": v} for k, v in sorted({**TAGS, **kw}.items())]  # noqa: E731
    assert res["HeadNode"]["Properties"]["Tags"] == tag(
        **{"bridgehead:node": "head", "Name": "c1-head"}
    )
    spec = res["ComputeLaunchTemplate"]["Properties"]["LaunchTemplateData"]["TagSpecifications"][0]
    assert spec["Tags"] == tag(**{"bridgehead:node": "compute", "Name": "c1-compute"})
    assert res["ComputeGroup"]["Properties"]["Tags"] == [
        {**t, "PropagateAtLaunch": True} for t in tag(**{"bridgehead:node": "compute"})
    ]


def test_foundation_template_is_substituted_and_tagged():
    import json

    text = policies.foundation_template("acme", "us-east-2", "222222222222", TAGS)
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True)
    assert (
        "{{" not in text
        and "__TAGS__" not in text
        and policies.bucket_name("acme", "us-east-2", "222222222222") in text
    )
    tagged = [
        r["Properties"].get("Tags") or r["Properties"].get("FileSystemTags")
        for r in json.loads(text)["Resources"].values()
        if "Tags" in r.get("Properties", {}) or "FileSystemTags" in r.get("Properties", {})
    ]
    assert tagged and all(
        t == [{"Key": k, "Value": v} for k, v in sorted(TAGS.items())] for t in tagged
    ), tagged


def test_role_template_feeds_the_external_id_parameter_into_the_trust_condition():
    import json

    trust = policies.trust_policy(P, "ext-1")
    perms = policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
    text = policies.customer_role_template("acme", "ext-1", "BridgeheadAccess", trust, perms)
    assert text == json.dumps(json.loads(text), indent=2)
    props = json.loads(text)["Resources"]["BridgeheadAccessRole"]["Properties"]
    conds = [
        st["Condition"]["StringEquals"] for st in props["AssumeRolePolicyDocument"]["Statement"]
    ]
    assert conds and all(c == {"sts:ExternalId": {"Ref": "ExternalId"}} for c in conds), conds
    assert props["Policies"][0]["PolicyDocument"] == perms
    assert (
        trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] == "ext-1"
    )  # the caller's copy is untouched
    assert "{{" not in text


def test_rendering_twice_with_other_values_leaks_nothing():
    """Templates are loaded once and copied: a second rendering never sees the first one's values."""
    import json

    a, b = (
        policies.trust_policy(P, "ext-a"),
        policies.trust_policy("arn:aws:iam::111111111111:root", "ext-b"),
    )
    assert (
        "ext-a" in json.dumps(a)
        and "ext-b" not in json.dumps(a)
        and "ext-b" in json.dumps(b)
        and "ext-a" not in json.dumps(b)
    )
    pa = policies.permission_policy("qqorga", "222222222222", "R", "123456789012")
    pb = policies.permission_policy("qqorgb", "333333333333", "R", "123456789012")
    assert (
        "qqorga" in json.dumps(pa) and "qqorgb" not in json.dumps(pa) and "qqorgb" in json.dumps(pb)
    )
    c1, c2 = (
        policies.cluster_template("qqorga", "qqone", {}),
        policies.cluster_template("qqorgb", "qqtwo", {}),
    )
    assert "qqtwo" not in c1 and "qqorgb" not in c1 and "qqone" not in c2 and "qqorga" not in c2
    r1 = policies.customer_role_template("qqorga", "x1", "QqRoleOne", a, pa)
    r2 = policies.customer_role_template("qqorgb", "x2", "QqRoleTwo", b, pb)
    assert "QqRoleTwo" not in r1 and "QqRoleOne" not in r2
    f1 = policies.foundation_template("qqorga", "us-east-1", "222222222222", {})
    f2 = policies.foundation_template("qqorgb", "us-west-2", "333333333333", {})
    assert "qqorgb" not in f1 and "qqorga" not in f2


def test_required_actions_in_order_without_repeats():
    doc = {
        "Statement": [
            {"Action": ["b:X", "a:Y"]},
            {"Action": "b:X"},
            {"Action": "c:Z"},
            {"Action": ["a:Y", "d:W"]},
        ]
    }
    assert policies.required_actions(doc) == ["b:X", "a:Y", "c:Z", "d:W"]


@pytest.mark.parametrize(
    "doc",
    [
        {"Version": "2012-10-17"},
        '{"Version": "2012-10-17"}',
        "%7B%22Version%22%3A%20%222012-10-17%22%7D",
        "{'Version': '2012-10-17'}",
    ],
    ids=["dict", "json", "url-encoded", "python literal"],
)
def test_parse_document_forms(doc):
    assert policies.parse_document(doc) == {"Version": "2012-10-17"}


def test_parse_document_refuses_a_non_object():
    with pytest.raises(ValueError, match="^policy document is not an object$"):
        policies.parse_document("['a']")


def test_evaluate_actions_reads_every_statement_and_ignores_shapeless_ones():
    docs = [
        (
            "inline",
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Resource": "*",
                    },  # neither Action nor NotAction: grants nothing
                    {"Effect": "Allow", "Action": "s3:Get*"},
                    {"Sid": "Run", "Effect": "Allow", "Action": "ec2:RunInstances"},
                    {"Sid": "D1", "Effect": "Deny", "Action": "iam:*"},
                    {"Sid": "D2", "Effect": "Deny", "Action": "iam:PassRole"},
                ]
            },
        )
    ]
    assert policies.evaluate_actions(
        ["ec2:RunInstances", "ec2:StopInstances", "iam:PassRole"], docs
    ) == {
        "ec2:RunInstances": None,  # the matching statement comes after one that does not match
        "ec2:StopInstances": "not granted by any attached or inline policy",
        "iam:PassRole": "denied by inline statement D1",  # the first Deny is named
    }


def test_substitute_keeps_an_explicit_prefix():
    assert (
        policies._substitute("{{PREFIX}}x-{{ORG_ID}}", {"ORG_ID": "acme", "PREFIX": "custom-"})
        == "custom-x-acme"
    )
    assert policies._substitute("{{PREFIX}}x", {"ORG_ID": "acme"}) == "bridgehead-acme--x"


# --- mutants found alive by the run of 2026-11-26 (docs/reliability.md) ------------------------
def test_hourly_price_is_exactly_sixty_minutes_of_each_node():
    rates = {"h.big": Decimal("6.00"), "c.big": Decimal("1.20")}
    assert billing.hourly_price("h.big", "c.big", 0, rates) == Decimal("6.00")
    assert billing.hourly_price("h.big", "c.big", 3, rates) == Decimal("9.60")


def test_the_cost_of_nothing_is_zero_to_the_cent():
    got = billing.cost({}, {"t3.medium": Decimal("0.0416")})
    assert isinstance(got, Decimal) and str(got) == "0.00"


def test_a_partial_close_at_the_ledgers_own_end_adds_no_window():
    segs = [seg(T0, 300)]
    since = T0 + timedelta(hours=2, minutes=30)
    assert billing.windows(segs, since, since, partial=True) == []


def test_a_partial_close_inside_a_half_closed_hour_is_one_window():
    segs = [seg(T0, 300)]
    since, until = T0 + timedelta(hours=2, minutes=30), T0 + timedelta(hours=2, minutes=50)
    hour = T0 + timedelta(hours=2)
    assert billing.windows(segs, since, until, partial=True) == [(hour, since, until)]


def test_reconcile_ignores_instance_changes_outside_the_segment():
    s = seg(T0 + timedelta(hours=1), 60, nodes=2)
    instances = [(T0, T0 + timedelta(hours=3)), (T0 + timedelta(minutes=30), None)]
    assert billing.reconcile([s], instances) == [s]


def test_reconcile_keeps_one_piece_when_a_replacement_keeps_the_count():
    s = seg(T0 + timedelta(hours=1), 60, nodes=1)
    swap = T0 + timedelta(hours=1, minutes=30)
    instances = [(T0, swap), (swap, None)]
    assert billing.reconcile([s], instances) == [s]
