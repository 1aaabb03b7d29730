"""Named activity option sets (splat them: ``**AWS_CALL``). Every set has explicit timeouts and a
retry policy; non-retryable error types come from :mod:`activities.errors`."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

# Kept in sync with activities.errors.NON_RETRYABLE_TYPES (importing it would drag botocore into
# the sandbox); tests/test_options.py asserts they match.
NON_RETRYABLE = [
    "AwsPermissionError",
    "AwsValidationError",
    "CustomerActionRequired",
    "ValidationError",
]

#: One AWS API call (or a handful). Throttling backs off up to 30 s; 10 attempts ride out a
#: regional blip of a few minutes, then the workflow sees the error and reports it.
AWS_CALL = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=10,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: Registry reads/writes in the platform account: fast, retried for longer (our own dependency).
REGISTRY = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=30,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: Using a customer's one-time keys: one attempt only -- bad keys never get better, and retrying
#: would keep the (encrypted) keys alive longer than needed.
ONE_SHOT = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(maximum_attempts=1),
)

#: Verification runs a dozen IAM/STS reads; give it room, retry transient faults only.
VERIFY = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=3),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: Polling window for long AWS waits (stacks, image copies): the "infrequent polling" pattern.
#: Each attempt is one quick describe call; while the resource is in progress the activity fails
#: with a benign retryable error and Temporal retries it after ``POLL_INTERVAL`` -- retries hold
#: no worker slot and are not written to history. The last attempt inside the window returns the
#: in-progress state instead of failing, so each window costs a constant handful of history
#: events (see workflows/_waiting.py for the bound).
POLL_INTERVAL = timedelta(seconds=30)
POLL_WINDOW = timedelta(minutes=10)
POLL = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=POLL_WINDOW + timedelta(minutes=2),
    retry_policy=RetryPolicy(
        initial_interval=POLL_INTERVAL,
        backoff_coefficient=1.0,
        maximum_interval=POLL_INTERVAL,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: One look at a stack in the event-driven wait (workflows/_waiting.py). Every attempt is a billed
#: action, so few and quick: a transient fault is retried 4 times within about a minute, then the
#: wait carries on with its next safety-net pause (the stack is looked at again anyway).
CHECK = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)
#: The safety net of the event-driven wait: pauses between checks when no event arrives. After the
#: check made at once, the next comes one minute later (stacks that fail early are seen soon), each
#: pause is three times the previous one, up to ten minutes: a lost event costs at most ten minutes
#: of lag, and a 40-minute stack costs 6 checks and 6 timers before its event (docs/benchmarks.md).
SAFETY_NET_FIRST = timedelta(minutes=1)
SAFETY_NET_GROWTH = 3
SAFETY_NET_MAX = timedelta(minutes=10)
#: Event hints closer than this to the previous check wait for the rest of it: a flood of
#: ``stack_event`` signals (untrusted) costs at most one check per 10 s.
HINT_SPACING = timedelta(seconds=10)

#: Sending an email: a few tries, never block the lifecycle on it (callers ignore failure).
NOTIFY = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        maximum_attempts=5,
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: Waiting for a copied image to become available: minutes to hours. Infrequent polling, bounded
#: by four hours (a copy that takes longer is reported FAILED with the reason).
IMAGE_WAIT = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=timedelta(hours=4),
    retry_policy=RetryPolicy(
        initial_interval=POLL_INTERVAL,
        backoff_coefficient=1.0,
        maximum_interval=POLL_INTERVAL,
        non_retryable_error_types=[*NON_RETRYABLE, "ImageCopyFailed"],
    ),
)
