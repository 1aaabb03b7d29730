"""One place that decides which AWS errors are worth retrying.

* Throttling and server-side errors: re-raised, so Temporal retries with backoff.
* Permission, validation and must-exist-but-does-not errors: non-retryable ``ApplicationError``
  whose message says what failed and what the customer (or operator) can do about it.
* ``*.NotFound`` of something this workflow just created (``aws_errors(..., just_created=True)``):
  EC2 is eventually consistent, so it is retried while the activity is younger than
  ``NOT_YET_VISIBLE_FOR``, then reported as not found.
* ``IdempotentParameterMismatch``: the same idempotency token with other parameters; retrying
  cannot help (and must not create a second resource), so it fails at once.
* Connection failures, timeouts and TLS errors: transient, retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from temporalio import activity
from temporalio.exceptions import ApplicationError

from bridgehead import metrics

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "BandwidthLimitExceeded",
        "LimitExceededException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServerError",
        "InternalServiceError",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
    }
)
PERMISSION_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "OptInRequired",
        "InvalidAccessKeyId",
        "UnauthorizedException",
        "NotAuthorized",
    }
)
VALIDATION_CODES = frozenset(
    {
        "ValidationError",
        "ValidationException",
        "MalformedPolicyDocument",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameter",
        "InvalidInput",
        "InvalidRequest",
        "InvalidAMIID.Malformed",
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Unavailable",
        "NoSuchEntity",
        "InvalidUserID.Malformed",
        "MissingParameter",
        "UnsupportedOperation",
        "InvalidChangeSetStatus",
        "InsufficientCapabilitiesException",
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "InvalidCustomerIdentifierException",
        "InvalidProductCodeException",
        "CustomerNotEntitledException",
        "InvalidUsageDimensionException",
        "ResourceNotFoundException",
        "InvalidSnapshot.NotFound",
        "InvalidSnapshotID.Malformed",
        # A configured bucket (the drop-box inbox) that does not exist: retrying cannot create it.
        "NoSuchBucket",
    }
)


#: How long a just-created resource may be invisible (EC2's eventual consistency) before its
#: absence is reported as a real not-found.
NOT_YET_VISIBLE_FOR = timedelta(seconds=90)


class AwsPermissionError(Exception):
    """Type name used for non-retryable permission failures."""


class AwsValidationError(Exception):
    """Type name used for non-retryable validation / not-found failures."""


class CustomerActionRequired(Exception):
    """Type name for failures only the customer can fix (wrong account, unsafe trust policy ...)."""


#: Error types that never succeed on retry; also listed in retry policies.
NON_RETRYABLE_TYPES = [
    AwsPermissionError.__name__,
    AwsValidationError.__name__,
    CustomerActionRequired.__name__,
]


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def http_status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _not_found(code: str) -> bool:
    return code.endswith(".NotFound") or code in (
        "NoSuchEntity",
        "ResourceNotFoundException",
        "NoSuchKey",
    )


def _activity_age() -> timedelta | None:
    """How long ago this activity was first scheduled (None outside an activity)."""
    if not activity.in_activity():
        return None
    from datetime import UTC, datetime

    return datetime.now(UTC) - activity.info().scheduled_time


def classify(
    err: ClientError, action: str, hint: str = "", *, just_created: bool = False
) -> BaseException:
    """Map a ClientError to what the activity should raise (and count it, by code and class)."""
    result = _classify(err, action, hint, just_created)
    kind = result.type if isinstance(result, ApplicationError) and result.type else "AwsError"
    metrics.count(
        "bridgehead_aws_errors",
        code=error_code(err) or str(http_status(err)),
        kind=kind,
        service=action.split(":", 1)[0],
    )
    return result


def _classify(
    err: ClientError, action: str, hint: str, just_created: bool = False
) -> BaseException:
    code = error_code(err)
    message = err.response.get("Error", {}).get("Message", str(err))
    if just_created and _not_found(code):
        age = _activity_age()
        if age is None or age < NOT_YET_VISIBLE_FOR:
            return ApplicationError(
                f"{action}: just created, not visible yet ({code}); retrying",
                type="AwsNotYetVisible",
                next_retry_delay=timedelta(seconds=3),
            )
    if code == "IdempotentParameterMismatch":
        return ApplicationError(
            f"{action}: AWS refused a retry whose idempotency token was already used with other parameters ({message}); "
            "not retried, so nothing is created twice. This is a bug in the caller; report it.",
            type=AwsValidationError.__name__,
            non_retryable=True,
        )
    if code in THROTTLING_CODES:
        # Retry sooner than the policy's max interval would, but never hammer: 2 s floor.
        return ApplicationError(
            f"{action}: AWS throttled the request ({code}); retrying",
            type="AwsThrottled",
            next_retry_delay=timedelta(seconds=2),
        )
    if code in TRANSIENT_CODES or http_status(err) >= 500:
        return ApplicationError(
            f"{action}: AWS had a transient error ({code or http_status(err)}): {message}",
            type="AwsTransient",
        )
    if code in PERMISSION_CODES:
        text = f"{action} was refused by AWS ({code}): {message}."
        text += f" {hint}" if hint else " Grant the missing permission and retry."
        return ApplicationError(text, type=AwsPermissionError.__name__, non_retryable=True)
    if (
        code in VALIDATION_CODES
        or code.endswith(".NotFound")
        or code.endswith(".Malformed")
        or code.startswith("Invalid")
    ):
        text = f"{action} was rejected by AWS ({code}): {message}."
        if hint:
            text += f" {hint}"
        return ApplicationError(text, type=AwsValidationError.__name__, non_retryable=True)
    return ApplicationError(f"{action}: AWS error {code}: {message}", type="AwsError")


@contextmanager
def aws_errors(action: str, hint: str = "", *, just_created: bool = False) -> Iterator[None]:
    """Translate botocore failures raised inside the block (see :func:`classify`).
    ``just_created``: the call reads or changes something this workflow created moments ago."""
    try:
        yield
    except ClientError as e:
        raise classify(e, action, hint, just_created=just_created) from e
    except NoCredentialsError as e:
        raise ApplicationError(
            f"{action}: the worker has no AWS credentials (configure the boto3 credential chain)",
            type=AwsPermissionError.__name__,
            non_retryable=True,
        ) from e
    except (
        EndpointConnectionError,
        ConnectionClosedError,
        ReadTimeoutError,
        ConnectTimeoutError,
        SSLError,
        HTTPClientError,
    ) as e:
        raise ApplicationError(
            f"{action}: cannot reach AWS ({type(e).__name__}: {e}); retrying", type="AwsUnreachable"
        ) from e
