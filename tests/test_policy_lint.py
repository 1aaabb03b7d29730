"""The policies pass the parliament IAM linter, except findings justified in writing in
policies/parliament-justified.json (each with its reason)."""

from __future__ import annotations

import json

import pytest

from bridgehead import policies
from tests.support.requirements import require_module

parliament = require_module("parliament", "parliament is part of the dev extra (make test installs it)")
JUSTIFIED = json.loads((policies.POLICY_DIR / "parliament-justified.json").read_text())["findings"]


def documents() -> dict[str, dict]:
    dropbox = json.loads((policies.POLICY_DIR / "dropbox-user.json").read_text().replace("{{PARTITION}}", "aws").replace("{{INBOX_BUCKET}}", "inbox"))
    return {
        "permission": policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012", "aws"),
        "trust": policies.trust_policy("arn:aws:iam::123456789012:root", "bh-" + "x" * 43),
        "dropbox-user": dropbox,
    }


@pytest.mark.parametrize("name", ["permission", "trust", "dropbox-user"])
def test_no_unjustified_findings(name):
    from parliament import analyze_policy_string

    doc = documents()[name]
    findings = analyze_policy_string(json.dumps(doc), ignore_private_auditors=True).findings
    unexplained = []
    for f in findings:
        text = json.dumps([f.detail, f.location], default=str)
        if f.issue == "MALFORMED" and name != "trust":
            unexplained.append((f.issue, text[:200]))  # only the trust policy may lack a Resource
        elif not any(j["issue"] == f.issue and j["contains"] in text for j in JUSTIFIED):
            unexplained.append((f.issue, text[:200]))
    assert unexplained == []


def test_every_justification_gives_a_reason():
    assert JUSTIFIED and all(len(j["why"]) > 40 for j in JUSTIFIED)
