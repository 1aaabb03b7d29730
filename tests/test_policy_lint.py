"""The policies pass the parliament IAM linter, except findings justified one by one, each named
exactly (document, statement Sid, issue, action / ARN / detail), in
policies/parliament-justified.json. A new finding, or a new grant in a justified statement,
fails; so does a justification that no longer matches a finding. Under CI a missing parliament
fails instead of skipping."""

from __future__ import annotations

import copy
import json

import pytest

from bridgehead import policies
from tests.support.tooling import require_module

JUSTIFIED = json.loads((policies.POLICY_DIR / "parliament-justified.json").read_text())["findings"]


def documents() -> dict[str, dict]:
    dropbox = json.loads(
        (policies.POLICY_DIR / "dropbox-user.json")
        .read_text()
        .replace("{{PARTITION}}", "aws")
        .replace("{{INBOX_BUCKET}}", "inbox")
    )
    return {
        "permission": policies.permission_policy(
            "acme", "222222222222", "BridgeheadAccess", "123456789012", "aws"
        ),
        "trust": policies.trust_policy(
            "arn:aws:iam::123456789012:role/bridgehead-platform", "bh-" + "x" * 43
        ),
        "dropbox-user": dropbox,
        "node-role": policies.node_role_policy("acme", "us-east-1", "222222222222"),
    }


Finding = tuple[str, str, str, str, str]  # document, sid, issue, kind (action|arn|detail), value


def findings(name: str, doc: dict) -> set[Finding]:
    """parliament's findings on ``doc``, one statement at a time, one entry per action."""
    from parliament import analyze_policy_string

    out: set[Finding] = set()
    for i, st in enumerate(doc["Statement"]):
        sid = st.get("Sid") or f"#{i + 1}"
        single = {"Version": doc.get("Version", "2012-10-17"), "Statement": [st]}
        for f in analyze_policy_string(json.dumps(single), ignore_private_auditors=True).findings:
            detail = f.detail
            if f.issue == "RESOURCE_MISMATCH" and isinstance(detail, list):
                out |= {(name, sid, f.issue, "action", a) for a in {d["action"] for d in detail}}
            elif isinstance(detail, list) and all(isinstance(d, str) for d in detail):
                out |= {(name, sid, f.issue, "action", a) for a in detail}
            elif f.issue == "INVALID_ARN":
                out.add((name, sid, f.issue, "arn", str((f.location or {}).get("string"))))
            else:
                out.add((name, sid, f.issue, "detail", str(detail)))
    return out


def justified(entries: list[dict]) -> set[Finding]:
    out: set[Finding] = set()
    for j in entries:
        base = (j["document"], j["sid"], j["issue"])
        out |= {(*base, "action", a) for a in j.get("actions", [])}
        if "arn" in j:
            out.add((*base, "arn", j["arn"]))
        if "detail" in j:
            out.add((*base, "detail", j["detail"]))
    return out


def verdict(docs: dict[str, dict]) -> tuple[list[Finding], list[Finding]]:
    """(findings no justification names, justifications that match no finding)."""
    found = set().union(*(findings(n, d) for n, d in docs.items()))
    named = justified(JUSTIFIED)
    return sorted(found - named), sorted(named - found)


def test_no_unjustified_findings_and_no_stale_justifications():
    require_module("parliament")
    unexplained, stale = verdict(documents())
    assert unexplained == [], (
        "parliament findings without an exact justification in policies/parliament-justified.json"
    )
    assert stale == [], "justifications that no longer match a finding: remove them"


def test_every_justification_names_one_finding_and_gives_a_reason():
    assert JUSTIFIED and all(len(j["why"]) > 40 for j in JUSTIFIED)
    for j in JUSTIFIED:
        assert {"document", "sid", "issue"} <= set(j), j
        assert ("actions" in j) + ("arn" in j) + ("detail" in j) == 1, j
        assert "contains" not in j, "substring justifications are gone: name the finding exactly"


def _planted(mutate) -> dict[str, dict]:  # noqa: ANN001
    docs = copy.deepcopy(documents())
    mutate(docs["permission"]["Statement"])
    return docs


@pytest.mark.parametrize(
    "what,mutate",
    [
        # A new dangerous grant on * in a new statement.
        (
            "ec2:TerminateInstances on *",
            lambda sts: sts.append(
                {
                    "Sid": "Oops",
                    "Effect": "Allow",
                    "Action": "ec2:TerminateInstances",
                    "Resource": "*",
                }
            ),
        ),
        (
            "kms:ScheduleKeyDeletion on *",
            lambda sts: sts.append(
                {
                    "Sid": "Oops",
                    "Effect": "Allow",
                    "Action": "kms:ScheduleKeyDeletion",
                    "Resource": "*",
                }
            ),
        ),
        (
            "iam:CreateUser on *",
            lambda sts: sts.append(
                {"Sid": "Oops", "Effect": "Allow", "Action": "iam:CreateUser", "Resource": "*"}
            ),
        ),
        # A new grant slipped into a statement that already has justified findings.
        (
            "kms:TagResource statement grows",
            lambda sts: [
                st["Action"].append("kms:ScheduleKeyDeletion")
                for st in sts
                if st["Sid"] == "CreateOrgKeysTaggedAtCreation"
            ],
        ),
        (
            "EC2 change statement grows",
            lambda sts: [
                st["Action"].append("ec2:DeleteVolume")
                for st in sts
                if st["Sid"] == "ChangeOnlyThisOrgsEc2Resources"
            ],
        ),
    ],
)
def test_planted_grant_fails_the_lint(what, mutate):
    require_module("parliament")
    unexplained, _ = verdict(_planted(mutate))
    assert unexplained, f"planted {what} was not reported"


def test_removed_statement_makes_its_justification_stale():
    require_module("parliament")
    _, stale = verdict(
        _planted(lambda sts: sts.remove(next(st for st in sts if st["Sid"] == "OrgKeyAliases")))
    )
    assert any(s[1] == "OrgKeyAliases" for s in stale), stale


def test_a_missing_linter_fails_under_ci_and_skips_only_locally(monkeypatch):
    from _pytest.outcomes import Failed, Skipped

    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="CI must run this check"):
        require_module("bridgehead_no_such_linter")
    monkeypatch.delenv("CI")
    with pytest.raises(Skipped):
        require_module("bridgehead_no_such_linter")
