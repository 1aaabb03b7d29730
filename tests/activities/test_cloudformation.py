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


class Calls:
    """When each CloudFormation call of one client ran (before-call to after-call, each held
    ``hold`` seconds at its start), by operation."""

    def __init__(self, client: Any, hold: float = 0.0) -> None:
        import threading
        import time

        self.spans: dict[str, list[list[float]]] = {}
        self._lock = threading.Lock()

        def before(model: Any, **_: Any) -> None:
            with self._lock:
                self.spans.setdefault(model.name, []).append([time.monotonic(), 0.0])
            time.sleep(hold)

        def after(model: Any, **_: Any) -> None:
            with self._lock:
                open_ = [s for s in self.spans[model.name] if not s[1]]
                open_[0][1] = time.monotonic()

        client.meta.events.register("before-call.cloudformation", before)
        client.meta.events.register("after-call.cloudformation", after)

    def count(self, operation: str) -> int:
        return len(self.spans.get(operation, []))

    def overlapped(self, a: str, b: str) -> bool:
        """Whether a call of ``a`` and one of ``b`` were in flight at the same time."""
        return any(
            x0 < y1 and y0 < x1
            for x0, x1 in self.spans.get(a, [])
            for y0, y1 in self.spans.get(b, [])
        )


class EventsAfterDescribe(StackActivities):
    """The planted defect of the look twins: the former look, whose events are read after the
    describe (the slot held for the sum of the two calls) and on every attempt, also the ones
    that only fail to be retried."""

    def _describe(self, ref, give_up, beside):  # type: ignore[no-untyped-def]
        cfn = self._cfn(ref.org_id, ref.region)
        stack = cfn.describe_stacks(StackName=ref.stack_name)["Stacks"][0]
        self._raw_events(cfn, stack["StackId"])
        return super()._describe(ref, give_up, beside=False)


def looks(acts: StackActivities, platform: Platform) -> Calls:
    """One early poll (to be retried) and one check of a stack in progress, each call held 0.2 s."""
    run(acts.create_stack, stack_request())
    moto_stack().status = "CREATE_IN_PROGRESS"
    calls = Calls(customer_client(platform, ORG, "cloudformation"), hold=0.2)
    with pytest.raises(ApplicationError):
        run(acts.poll_stack, ref(), **EARLY_IN_WINDOW)
    retried = calls.count("DescribeStackEvents")
    look = run(acts.check_stack, ref(), **EARLY_IN_WINDOW)
    assert look.status == "CREATE_IN_PROGRESS" and look.events, look
    calls.retried_poll_events = retried  # type: ignore[attr-defined]
    return calls


def test_a_look_reads_the_events_beside_the_describe_and_a_retried_poll_none(
    acts: StackActivities, platform: Platform
):
    """Issue 23 (activity slots while 10,000 clusters wait): a check holds its slot for the slower
    of its two calls, not their sum; a poll that is only retried reads no events."""
    calls = looks(acts, platform)
    assert calls.retried_poll_events == 0  # type: ignore[attr-defined]
    assert calls.overlapped("DescribeStacks", "DescribeStackEvents")


def test_twin_events_read_after_the_describe_are_caught(platform: Platform):
    platform.ready_org(ORG)
    calls = looks(EventsAfterDescribe(platform.aws, platform.registry), platform)
    assert calls.retried_poll_events == 1  # type: ignore[attr-defined]
    assert not calls.overlapped("DescribeStacks", "DescribeStackEvents")


class TrustsEventsByName(StackActivities):
    """The planted defect of the twin below: the events read by name are taken as they come."""

    def _stack_events(self, cfn, stack_name, stack_id, early):  # type: ignore[no-untyped-def]
        assert early is not None
        return self._parse_events(early.result())


def test_events_read_by_name_of_another_stack_are_read_again_by_id(
    acts: StackActivities, platform: Platform
):
    """The events read beside the describe go by the stack's name: if the name meanwhile belongs
    to another stack (deleted and created again), the look reads the described stack's own."""
    ids_read, poll = look_with_foreign_events(acts, platform)
    assert ids_read == [NAME, moto_stack().stack_id]
    assert poll.failure_reason == "ours", poll


def test_twin_events_of_another_stack_taken_by_name_are_caught(platform: Platform):
    platform.ready_org(ORG)
    ids_read, poll = look_with_foreign_events(
        TrustsEventsByName(platform.aws, platform.registry), platform
    )
    assert ids_read == [NAME] and poll.failure_reason == "theirs"


def look_with_foreign_events(
    acts: StackActivities, platform: Platform
) -> tuple[list[str], m.StackPoll]:
    """A rolled-back stack whose events by name are another stack's (its own by id say "ours")."""
    from moto.cloudformation.models import Event

    run(acts.create_stack, stack_request())
    stack = moto_stack()
    stack.events.append(
        Event(
            stack.stack_id, NAME, "Head", "x", "AWS::EC2::Instance", "CREATE_FAILED", "ours", None
        )
    )
    stack.status = "ROLLBACK_COMPLETE"
    other = "arn:aws:cloudformation:eu-west-1:000000000000:stack/x/other"
    client = customer_client(platform, ORG, "cloudformation")
    ids_read: list[str] = []

    def answer(request: dict[str, Any]) -> Any:
        ids_read.append(request["body"]["StackName"])  # the query protocol's form fields
        if ids_read[-1] != NAME:
            return None  # by id: moto answers
        foreign = {
            "StackId": other,
            "StackName": NAME,
            "EventId": "e",
            "LogicalResourceId": "Head",
            "ResourceType": "AWS::EC2::Instance",
            "ResourceStatus": "CREATE_FAILED",
            "ResourceStatusReason": "theirs",
            "Timestamp": "2026-11-26T00:00:00+00:00",
        }
        return (
            type("R", (), {"status_code": 200, "headers": {}})(),
            {"StackEvents": [foreign], "ResponseMetadata": {"HTTPStatusCode": 200}},
        )

    client.meta.events.register_first(
        "before-call.cloudformation.DescribeStackEvents", lambda params, **kw: answer(params)
    )
    return ids_read, run(acts.check_stack, ref(), **EARLY_IN_WINDOW)


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


def test_a_look_at_a_missing_stack_is_not_found_or_done_too(acts: StackActivities):
    """check_stack reads the events beside the describe: a stack that does not exist (the events
    call refused as well) is NOT_FOUND when created, DELETE_COMPLETE when deleted."""
    gone = run(acts.check_stack, ref(), **EARLY_IN_WINDOW)
    assert (gone.status, gone.terminal, gone.succeeded) == ("NOT_FOUND", True, False)
    deleted = run(acts.check_stack, ref("delete"), **EARLY_IN_WINDOW)
    assert (deleted.status, deleted.terminal, deleted.succeeded) == ("DELETE_COMPLETE", True, True)


def test_a_look_whose_events_are_refused_fails_as_that_call(
    acts: StackActivities, platform: Platform
):
    """The events read beside the describe keep their call's classification and name."""
    run(acts.create_stack, stack_request())
    refuse(
        customer_client(platform, ORG, "cloudformation"), "DescribeStackEvents", "Throttling", 400
    )
    with pytest.raises(ApplicationError) as e:
        run(acts.check_stack, ref(), **EARLY_IN_WINDOW)
    assert (e.value.type, e.value.non_retryable) == ("AwsThrottled", False), e.value
    assert e.value.message.startswith(f"cloudformation:DescribeStackEvents {NAME}")


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
