"""Validation errors in words (issue #22): what users of the UI, the temporal CLI and the starter
read is ``field: what it must be``, never a regular expression, an internal type name or the
rejected value."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from bridgehead import models as m
from bridgehead.messages import describe

BAD = [
    (
        m.OnboardOrganizationRun,
        {
            "org_id": "Bad Org!",
            "display_name": "x",
            "admin_email": "nope",
            "aws_account_id": "26000000000x",
        },
        ["org_id: 3-32 lower-case", "admin_email: an e-mail address", "aws_account_id: 12 digits"],
    ),
    (m.OnboardOrganizationRun, ["badorg"], ["input: a JSON object"]),
    (
        m.ClusterLifecycleInput,
        {
            "org_id": "acme",
            "name": "1abc",
            "region": "us-east-1",
            "config": {
                "head_instance_type": "T3",
                "compute_instance_type": "c5.xlarge",
                "compute_initial_nodes": "2",
            },
        },
        [
            "name: a letter",
            "config.head_instance_type: an EC2 instance type",
            "config.compute_initial_nodes: a whole number",
        ],
    ),
    (
        m.SubmitRoleInput | None,
        {"role_arn": "arn:aws:iam::222222222222:role/x", "force": True},
        ["force: not a field of this input"],
    ),
    (
        m.CreateRoleForMeInput,
        {"access_key_id": "AKIASECRETKEYID00000", "secret_access_key": "TOPSECRET-VALUE"},
        ["access_key_id: a temporary access key id", "session_token: required"],
    ),
]


def unreadable(text: str) -> list[str]:
    """What a message must never hold: regular expressions, pydantic's internal type names."""
    found = []
    if re.search(r"\^|\\d|\[\^|\$'", text):
        found.append("a regular expression")
    if re.search(r"nullable\[|[A-Z][a-z]+(Input|Run)\b|type=\w+", text):
        found.append("an internal type name")
    return found


@pytest.mark.parametrize("model,payload,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_messages_name_the_field_and_what_it_must_be(model, payload, words):
    with pytest.raises(ValidationError) as e:
        TypeAdapter(model).validate_python(payload)
    text = describe(e.value)
    for w in words:
        assert w in text, text
    assert unreadable(text) == [], text
    assert "TOPSECRET-VALUE" not in text and "AKIASECRETKEYID00000" not in text


def test_twin_pydantic_s_own_message_is_caught():
    with pytest.raises(ValidationError) as e:
        TypeAdapter(m.SubmitRoleInput | None).validate_python({"role_arn": 1})
    assert unreadable(str(e.value)) == ["an internal type name"]
    with pytest.raises(ValidationError) as e:
        m.OnboardOrganizationInput.model_validate(
            {"org_id": "acme", "display_name": "x", "admin_email": "a@b.co", "aws_account_id": "1"}
        )
    assert "a regular expression" in unreadable(str(e.value))


async def test_the_failure_converter_sends_the_words():
    from temporalio.api.failure.v1 import Failure

    from bridgehead.converter import make_data_converter

    dc = make_data_converter(None)
    with pytest.raises(ValidationError) as e:
        m.OnboardOrganizationInput.model_validate(
            {"org_id": "acme", "display_name": "x", "admin_email": "a@b.co", "aws_account_id": "1"}
        )
    failure = Failure()
    dc.failure_converter.to_failure(e.value, dc.payload_converter, failure)
    assert failure.message == "invalid input: aws_account_id: 12 digits, e.g. 222222222222"
    assert failure.application_failure_info.type == "BadInput"
