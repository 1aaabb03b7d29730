"""A minimal worker process for the real-server failover test (tests/integration/test_failover.py):
one workflow that runs one activity, the activity options either as shipped
(``workflows._options.AWS_CALL``) or planted (a long start-to-close, no heartbeat timeout), and the
worker's heartbeat interceptor as ``worker.py`` installs it. The first attempt blocks (a call the
worker dies under); a retry returns at once.

Run: ``python tests/support/failover_probe.py <temporal address> <task queue>``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio import activity, workflow  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.common import RetryPolicy  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402
from temporalio.workflow import ActivityConfig  # noqa: E402

from activities.heartbeat import HeartbeatInterceptor  # noqa: E402
from workflows._options import AWS_CALL  # noqa: E402

#: The defect the failover bound exists to catch: AWS_CALL as it was before issue 19.
PLANTED = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=25),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1)),
)
FIRST_ATTEMPT_BLOCKS = 60.0


@activity.defn(name="held_call")
def held_call(_: str) -> int:
    attempt = activity.info().attempt
    if attempt == 1:
        time.sleep(FIRST_ATTEMPT_BLOCKS)  # the worker is killed under this
    return attempt


@workflow.defn(name="FailoverProbe")
class FailoverProbe:
    @workflow.run
    async def run(self, options: str) -> int:
        opts = AWS_CALL if options == "shipped" else PLANTED
        return await workflow.execute_activity(held_call, options, **opts)


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    with ThreadPoolExecutor(4) as ex:
        await Worker(
            client,
            task_queue=task_queue,
            workflows=[FailoverProbe],
            activities=[held_call],
            activity_executor=ex,
            workflow_runner=UnsandboxedWorkflowRunner(),
            interceptors=[HeartbeatInterceptor()],
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=5),
        ).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
