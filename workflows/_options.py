"""Named activity option sets (splat them: ``**AWS_CALL``). Every set has explicit timeouts and a
retry policy; non-retryable error types come from :mod:`activities.errors`."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig, LocalActivityConfig

from bridgehead import polling

# Kept in sync with activities.errors.NON_RETRYABLE_TYPES (importing it would drag botocore into
# the sandbox); tests/test_options.py asserts they match.
NON_RETRYABLE = [
    "AwsPermissionError",
    "AwsValidationError",
    "CustomerActionRequired",
    "ValidationError",
]

#: Failover (issue 19): every set has a heartbeat timeout, and the worker heartbeats for every
#: running activity in the background (activities/heartbeat.py), so an attempt whose worker died
#: is retried on another worker about this long after the last beat, instead of after its
#: start-to-close timeout. 10 s: beats go out every 2.5 s (the SDK sends at most one per 8 s), so
#: a loaded machine has several chances before a live worker's attempt is given up.
HEARTBEAT = timedelta(seconds=10)
#: First retry after a failure or a time-out: short, so failover is heartbeat + 1 s. Harmless
#: because every activity is idempotent; throttling sets its own delay (activities/errors.py).
FIRST_RETRY = timedelta(seconds=1)

#: One AWS API call (or a handful). 20 s: botocore's own two attempts with 5 s connect and a
#: response in seconds; a call that hangs longer is cut and retried (idempotent). Throttling backs
#: off up to 30 s; 10 attempts ride out a regional blip of a few minutes, then the workflow sees
#: the error and reports it.
AWS_CALL = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=20),
    heartbeat_timeout=HEARTBEAT,
    retry_policy=RetryPolicy(
        initial_interval=FIRST_RETRY,
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=10,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: Registry reads/writes in the platform account: fast (10 s is generous for a few DynamoDB
#: items, and a worker that died under one is noticed as soon as by a heartbeat), retried for
#: longer (our own dependency).
REGISTRY = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=10),
    heartbeat_timeout=HEARTBEAT,
    retry_policy=RetryPolicy(
        initial_interval=FIRST_RETRY,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=30,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: The same calls as local activities (issue 23): run by the worker inside the workflow task that
#: asks for them, recorded as one marker, with no activity task, no dispatch through the server and
#: no second workflow task -- about 20 ms less per call on the dev server (docs/benchmarks.md). Only
#: for short, idempotent calls in the platform account (registry items, template rendering): a
#: local activity holds its workflow task while it runs, and has no heartbeat (a dead worker's
#: call is retried when the workflow task times out, 10 s). Retries within 10 s are made by the
#: worker; later ones wait on a timer, with the registry's policy.
REGISTRY_LOCAL = LocalActivityConfig(
    start_to_close_timeout=REGISTRY["start_to_close_timeout"],
    retry_policy=REGISTRY["retry_policy"],
    local_retry_threshold=timedelta(seconds=10),
)

#: Ledger work that grows with the organisation: closing every cluster's finished hours (one
#: conditional write each, and a look at each cluster's Auto Scaling group) and reading the
#: entries for a report. Sized for a backlog (a day of hours for a dozen clusters) on a busy
#: table; failover still comes from the heartbeat timeout. Retried like the registry (each
#: attempt skips the entries already written).
LEDGER_WORK = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    heartbeat_timeout=HEARTBEAT,
    retry_policy=REGISTRY["retry_policy"],
)

#: Using a customer's one-time keys: one attempt only -- bad keys never get better, and retrying
#: would keep the (encrypted) keys alive longer than needed.
ONE_SHOT = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    heartbeat_timeout=HEARTBEAT,  # a dead worker fails the attempt in 10 s; the workflow reports it
    retry_policy=RetryPolicy(maximum_attempts=1),
)

#: Verification runs a dozen IAM/STS reads; give it room, retry transient faults only.
VERIFY = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=3),
    heartbeat_timeout=HEARTBEAT,  # minutes of work: a dead worker must not cost them
    retry_policy=RetryPolicy(
        initial_interval=FIRST_RETRY,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: Polling window for long AWS waits (stacks, image copies): the "infrequent polling" pattern.
#: Each attempt is one quick describe call; while the resource is in progress the activity fails
#: with a benign retryable error carrying ``next_retry_delay=POLL_INTERVAL`` (bridgehead.polling),
#: so Temporal polls again after the interval -- retries hold no worker slot and are not written to
#: history. Any other failure, and an attempt lost with its worker (heartbeat timeout), is retried
#: after ``FIRST_RETRY`` at a fixed pace (backoff 1.0: the attempt count grows with every benign
#: retry, so a growing backoff would reach its maximum after a few polls and slow failover). The
#: last attempt inside the window returns the in-progress state instead of failing, so each
#: window costs a constant handful of history events (see workflows/_waiting.py for the bound).
POLL_INTERVAL = polling.POLL_INTERVAL
POLL_WINDOW = timedelta(minutes=10)
POLL = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=20),  # two describe calls
    heartbeat_timeout=HEARTBEAT,
    schedule_to_close_timeout=POLL_WINDOW + timedelta(minutes=2),
    retry_policy=RetryPolicy(
        initial_interval=FIRST_RETRY,
        backoff_coefficient=1.0,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: One look at a stack in the event-driven wait (workflows/_waiting.py). Every attempt is a billed
#: action, so few and quick: a transient fault is retried 4 times within about a minute, then the
#: wait carries on with its next safety-net pause (the stack is looked at again anyway).
CHECK = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=20),  # one describe call
    heartbeat_timeout=HEARTBEAT,
    retry_policy=RetryPolicy(
        initial_interval=FIRST_RETRY,
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
    start_to_close_timeout=timedelta(seconds=20),  # one SES call
    heartbeat_timeout=HEARTBEAT,
    retry_policy=RetryPolicy(
        initial_interval=FIRST_RETRY,
        maximum_attempts=5,
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

#: Waiting for a copied image to become available: minutes to hours. Infrequent polling, bounded
#: by four hours (a copy that takes longer is reported FAILED with the reason).
IMAGE_WAIT = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=20),  # one describe call
    heartbeat_timeout=HEARTBEAT,
    schedule_to_close_timeout=timedelta(hours=4),
    retry_policy=RetryPolicy(
        initial_interval=FIRST_RETRY,  # as POLL: in progress waits POLL_INTERVAL (next_retry_delay)
        backoff_coefficient=1.0,
        non_retryable_error_types=[*NON_RETRYABLE, "ImageCopyFailed"],
    ),
)
