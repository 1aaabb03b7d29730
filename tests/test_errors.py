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
