"""AWS error classification (issue #22 additions): a just-created resource that is not visible
yet is retried for a bounded time, an idempotency-token mismatch is never retried, and
connection, timeout and TLS failures are transient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, SSLError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import errors
from activities.errors import aws_errors, classify


def err(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


def raised(exc: BaseException, **kw: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as e, aws_errors("ec2:X", **kw):  # type: ignore[arg-type]
        raise exc
    return e.value


def test_not_found_right_after_a_create_is_retried_then_reported():
    env = ActivityEnvironment()
    young = env.info.__class__(
        **{**env.info.__dict__, "scheduled_time": datetime.now(UTC) - timedelta(seconds=5)}
    )
    old = env.info.__class__(
        **{
            **env.info.__dict__,
            "scheduled_time": datetime.now(UTC) - errors.NOT_YET_VISIBLE_FOR - timedelta(seconds=1),
        }
    )
    env.info = young
    e = env.run(lambda: raised(err("InvalidAMIID.NotFound"), just_created=True))
    assert (
        e.type == "AwsNotYetVisible"
        and not e.non_retryable
        and e.next_retry_delay == timedelta(seconds=3)
    )
    env.info = old
    e = env.run(lambda: raised(err("InvalidAMIID.NotFound"), just_created=True))
    assert e.type == "AwsValidationError" and e.non_retryable
    # Without just_created a not-found fails at once, however young the activity.
    env.info = young
    e = env.run(lambda: raised(err("InvalidAMIID.NotFound")))
    assert e.non_retryable


def test_idempotency_mismatch_is_never_retried():
    e = classify(err("IdempotentParameterMismatch"), "ec2:CopyImage")
    assert isinstance(e, ApplicationError) and e.non_retryable and "idempotency token" in e.message


@pytest.mark.parametrize(
    "exc",
    [
        ConnectTimeoutError(endpoint_url="https://ec2"),
        SSLError(endpoint_url="https://ec2", error="bad handshake"),
    ],
)
def test_timeouts_and_tls_errors_are_transient(exc):
    e = raised(exc)
    assert e.type == "AwsUnreachable" and not e.non_retryable


#: (error code, HTTP status, retried?) as the brief requires: throttling and 5xx retry;
#: permission, validation and must-exist-not-found fail at once.
CLASSES = [
    ("Throttling", 400, True),
    ("ThrottlingException", 400, True),
    ("RequestLimitExceeded", 503, True),
    ("InternalError", 500, True),
    ("ServiceUnavailable", 503, True),
    ("AccessDenied", 403, False),
    ("UnauthorizedOperation", 403, False),
    ("ValidationError", 400, False),
    ("InvalidParameterValue", 400, False),
    ("InvalidAMIID.NotFound", 400, False),
]


def classification_problems(classify_fn) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for code, status, retried in CLASSES:
        e = classify_fn(err(code, status), "ec2:X")
        got = isinstance(e, ApplicationError) and not e.non_retryable
        if got != retried:
            out.append(f"{code}: {'retried' if got else 'not retried'}")
        if not retried and (not isinstance(e, ApplicationError) or "ec2:X" not in e.message):
            out.append(f"{code}: no message naming the call")
    return out


def test_throttling_and_5xx_retry_permission_and_validation_fail_at_once():
    assert classification_problems(classify) == []


def test_twin_a_classifier_that_retries_everything_is_caught():
    def retries_all(exc, action):  # type: ignore[no-untyped-def]
        return ApplicationError(f"{action}: {exc}", type="AwsTransient")

    problems = classification_problems(retries_all)
    assert len(problems) == 5 and all("retried" in p for p in problems), problems
