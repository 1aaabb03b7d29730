"""The poll interval of the infrequent-polling pattern, and the error that asks for it.

A polling activity (``poll_stack``, ``wait_image_available``) that finds its resource still in
progress fails with :func:`still_waiting`: a benign, retryable error whose ``next_retry_delay``
is ``POLL_INTERVAL``. The delay travels with the failure instead of being the retry policy's
interval, so the policy's own (short) interval applies to everything else -- above all to an
attempt lost with its worker, which must be retried at once on a surviving worker (failover,
issue 19), not a poll interval later. Pure: imported by workflows (``workflows/_options.py``) and
activities alike.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

#: Between two describe calls while a stack or an image copy is in progress.
POLL_INTERVAL = timedelta(seconds=30)


def still_waiting(message: str, type: str) -> ApplicationError:
    """The benign, retryable error that makes Temporal poll again after ``POLL_INTERVAL``."""
    return ApplicationError(
        message,
        type=type,
        category=ApplicationErrorCategory.BENIGN,
        next_retry_delay=POLL_INTERVAL,
    )
