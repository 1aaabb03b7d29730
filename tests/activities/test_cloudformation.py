"""activities/cloudformation.py against moto: stacks are created in the customer account through
the organisation's role, once per request token; polls report success, failure (the first failed
resource) and absence, and ask Temporal to poll again while in progress; deletes and resizes act
on the stack; AWS refusals fail at once, throttling is retried."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.cloudformation import TOKEN_TAG, StackActivities
from bridgehead import models as m
from tests.activities.conftest import (
    CUSTOMER,
    EARLY_IN_WINDOW,
    REGION,
    Platform,
    admin,
    customer_client,
    refuse,
    run,
)

ACTIVITIES = ("create_stack", "poll_stack", "check_stack", "delete_stack", "resize_stack")

ORG = "acme"
NAME = "bridgehead-acme--cluster-c1"
TEMPLATE = json.dumps(
    {
        "Parameters": {"ComputeNodes": {"Type": "String"}, "HeadInstanceType": {"Type": "String"}},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ComputeNodes": {"Value": {"Ref": "ComputeNodes"}}},
    }
)


@pytest.fixture
def acts(platform: Platform) -> StackActivities:
    platform.ready_org(ORG)
    return StackActivities(platform.aws, platform.registry)


def stack_request(token: str = "cluster-acme-c1/create") -> m.StackRequest:
    return m.StackRequest(
        org_id=ORG,
        region=REGION,
        stack_name=NAME,
        template_body=TEMPLATE,
        parameters={"ComputeNodes": "2", "HeadInstanceType": "t3.medium"},
        tags={"bridgehead:org": ORG, "bridgehead:kind": "cluster", "bridgehead:cluster": "c1"},
        client_request_token=token,
    )


def ref(expect: str = "create") -> m.StackRef:
    return m.StackRef(org_id=ORG, region=REGION, stack_name=NAME, expect=expect)  # type: ignore[arg-type]


def in_customer_account() -> list[dict[str, Any]]:
    """The customer's stacks named NAME, as the customer's administrator sees them."""
    try:
        return list(admin("cloudformation").describe_stacks(StackName=NAME)["Stacks"])
    except ClientError:
        return []


def moto_stack() -> Any:
    """moto's own record of the stack (to put it in states moto never reaches by itself)."""
    from moto.cloudformation.models import cloudformation_backends

    stacks = cloudformation_backends[CUSTOMER][REGION].stacks.values()
    return next(s for s in stacks if s.name == NAME and s.status != "DELETE_COMPLETE")


def test_create_makes_the_stack_in_the_customer_account_once_per_token(
    acts: StackActivities, platform: Platform
):
    first = run(acts.create_stack, stack_request())
    again = run(acts.create_stack, stack_request())  # a retry of the same request
    (stack,) = in_customer_account()
    assert (
        first.stack_id == again.stack_id == stack["StackId"] and f":{CUSTOMER}:" in first.stack_id
    )
    tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
    assert tags[TOKEN_TAG] == "cluster-acme-c1/create" and tags["bridgehead:cluster"] == "c1"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {
        "ComputeNodes": "2",
        "HeadInstanceType": "t3.medium",
    }
    assert (first.status, first.terminal) == ("CREATE_IN_PROGRESS", False)
    with pytest.raises(ClientError):  # nothing in the platform account
        platform.aws.platform("cloudformation").describe_stacks(StackName=NAME)


def test_a_foreign_stack_of_the_same_name_is_refused_not_adopted(acts: StackActivities):
    params = [
        {"ParameterKey": k, "ParameterValue": "1"} for k in ("ComputeNodes", "HeadInstanceType")
    ]
    admin("cloudformation").create_stack(StackName=NAME, TemplateBody=TEMPLATE, Parameters=params)
    with pytest.raises(ApplicationError) as e:
        run(acts.create_stack, stack_request())
    assert e.value.type == "CustomerActionRequired" and e.value.non_retryable
    assert "was not created by this request" in e.value.message
    (stack,) = in_customer_account()
    assert stack.get("Tags", []) == []  # left as it was


def test_poll_reports_success_with_outputs_and_when_it_completed(acts: StackActivities):
    created = run(acts.create_stack, stack_request())
    poll = run(acts.poll_stack, ref())
    assert (poll.status, poll.terminal, poll.succeeded) == ("CREATE_COMPLETE", True, True)
    assert poll.stack_id == created.stack_id and poll.outputs == {"ComputeNodes": "2"}
    assert poll.completed_at is not None and poll.completed_at == poll.events[0].timestamp


def test_in_progress_is_polled_again_until_the_windows_last_attempt(acts: StackActivities):
    run(acts.create_stack, stack_request())
    moto_stack().status = "CREATE_IN_PROGRESS"
    with pytest.raises(ApplicationError) as e:
        run(acts.poll_stack, ref(), **EARLY_IN_WINDOW)
    assert e.value.type == "StackInProgress" and not e.value.non_retryable
    assert e.value.category == ApplicationErrorCategory.BENIGN and e.value.next_retry_delay
    # The window's last attempt (ActivityEnvironment's 1 s window) returns the state instead.
    last = run(acts.poll_stack, ref())
    assert (last.status, last.terminal, last.succeeded) == ("CREATE_IN_PROGRESS", False, False)
    # check_stack is one look, however early: the workflow decides when to look again.
    look = run(acts.check_stack, ref(), **EARLY_IN_WINDOW)
    assert (look.status, look.terminal) == ("CREATE_IN_PROGRESS", False)
    moto_stack().status = "CREATE_COMPLETE"
    assert run(acts.check_stack, ref(), **EARLY_IN_WINDOW).succeeded


def test_a_failed_stack_names_its_first_failed_resource(acts: StackActivities):
    from moto.cloudformation.models import Event

    run(acts.create_stack, stack_request())
    stack = moto_stack()

    def event(logical: str, rtype: str, status: str, reason: str) -> None:
        stack.events.append(Event(stack.stack_id, NAME, logical, "x", rtype, status, reason, None))

    event("Handle", "AWS::EC2::Instance", "CREATE_FAILED", "We currently do not have capacity")
    event("Other", "AWS::EC2::Volume", "CREATE_FAILED", "Resource creation cancelled")
    event(NAME, "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE", "")
    stack.status = "ROLLBACK_COMPLETE"
    poll = run(acts.poll_stack, ref(), **EARLY_IN_WINDOW)
    assert (poll.terminal, poll.succeeded) == (True, False)
    assert poll.failure_resource == "Handle (AWS::EC2::Instance)"
    assert poll.failure_reason == "We currently do not have capacity"


def test_a_missing_stack_is_not_found_when_created_and_done_when_deleted(acts: StackActivities):
    gone = run(acts.poll_stack, ref())
    assert (gone.status, gone.terminal, gone.succeeded) == ("NOT_FOUND", True, False)
    assert "does not exist" in (gone.failure_reason or "")
    deleted = run(acts.poll_stack, ref("delete"))
    assert (deleted.status, deleted.succeeded) == ("DELETE_COMPLETE", True)


def test_delete_removes_the_stack_and_deleting_a_missing_one_is_done(acts: StackActivities):
    run(acts.create_stack, stack_request())
    delete = m.StackRef(
        org_id=ORG, region=REGION, stack_name=NAME, client_request_token="c1/delete"
    )
    run(acts.delete_stack, delete)
    assert in_customer_account() == []
    run(acts.delete_stack, delete)  # a retry after the stack went
    assert run(acts.poll_stack, ref("delete")).succeeded


def test_resize_changes_compute_nodes_and_keeps_every_other_parameter(acts: StackActivities):
    run(acts.create_stack, stack_request())
    resize = m.ResizeStackInput(
        org_id=ORG, region=REGION, stack_name=NAME, compute_nodes=5, client_request_token="r1"
    )
    answer = run(acts.resize_stack, resize)
    assert (answer.status, answer.terminal) == ("UPDATE_IN_PROGRESS", False)
    (stack,) = in_customer_account()
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params == {"ComputeNodes": "5", "HeadInstanceType": "t3.medium"}
    run(acts.resize_stack, resize)  # "No updates are to be performed": already done
    done = run(acts.poll_stack, ref("update"))
    assert done.succeeded and done.outputs == {"ComputeNodes": "5"}


CALLS = {
    "CreateStack": ("create_stack", stack_request),
    "DescribeStacks": ("poll_stack", ref),
    "DeleteStack": ("delete_stack", ref),
    "UpdateStack": (
        "resize_stack",
        lambda: m.ResizeStackInput(
            org_id=ORG, region=REGION, stack_name=NAME, compute_nodes=3, client_request_token="r"
        ),
    ),
}


@pytest.mark.parametrize("operation", sorted(CALLS))
@pytest.mark.parametrize(
    "code,kind,retried",
    [
        ("AccessDenied", "AwsPermissionError", False),
        ("ValidationError", "AwsValidationError", False),
        ("Throttling", "AwsThrottled", True),
        ("ServiceUnavailable", "AwsTransient", True),
    ],
)
def test_aws_refusals_fail_at_once_and_throttling_is_retried(
    acts: StackActivities, platform: Platform, operation: str, code: str, kind: str, retried: bool
):
    run(acts.create_stack, stack_request())
    refuse(
        customer_client(platform, ORG, "cloudformation"), operation, code, 503 if retried else 400
    )
    name, make = CALLS[operation]
    with pytest.raises(ApplicationError) as e:
        run(getattr(acts, name), make())
    assert (e.value.type, e.value.non_retryable) == (kind, not retried), e.value
    assert e.value.message.startswith(f"cloudformation:{operation} {NAME}")
    if not retried:  # says what AWS refused and what to do about it
        assert f"by AWS ({code}): planted {code}." in e.value.message


def test_an_organisation_without_a_verified_role_is_never_called_in(platform: Platform):
    platform.ready_org(ORG, state="AWAITING_ROLE", role_arn=None)
    acts = StackActivities(platform.aws, platform.registry)
    with pytest.raises(ApplicationError) as e:
        run(acts.create_stack, stack_request())
    assert e.value.type == "CustomerActionRequired" and e.value.non_retryable
    assert "has no verified role yet" in e.value.message and in_customer_account() == []
