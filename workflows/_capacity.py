"""Capacity failover and bootstrap diagnostics of ``ClusterLifecycle``: a mixin of
:class:`workflows.clusters.ClusterLifecycleWorkflow`, kept apart so clusters.py stays one concern.

When a creation attempt fails because EC2 has no capacity (``InsufficientInstanceCapacity``,
``Unsupported``, ``InstanceLimitExceeded`` in the stack's failure events), the failed stack is
deleted (idempotently: a token per attempt, a missing stack is success) and the stack is created
again in the foundation's next Availability Zone, then with the next compute instance type
(``compute_instance_types``). Each attempt, with its outcome and reason, is in ``status``, in the
history (the activities' inputs and summaries) and in the log; billing follows the type that runs.

Running workflows: the decisions are taken only under ``workflow.patched("capacity-failover")``
(and ``"head-console-on-failure"``), at the point where an unpatched run would fail the cluster.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from bridgehead.capacity import attempt_order, bootstrap_failed, capacity_error
    from bridgehead.models import (
        CapacityAttempt,
        ClusterLifecycleRun,
        ClusterPlan,
        ClusterRuntime,
        ConsoleTail,
        ConsoleTailInput,
        Placement,
        StackPoll,
        StackRef,
        StackRequest,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._common import request_token, root_message
from workflows._options import AWS_CALL
from workflows._waiting import wait_for_stack


class FailsOverCapacity:
    """Tries the next (instance type, Availability Zone) when EC2 lacks capacity."""

    # Provided by the workflow class.
    _in: ClusterLifecycleRun
    _rt: ClusterRuntime
    _plan: ClusterPlan | None
    _stop_creating: Callable[[], bool]

    def _order(self) -> list[tuple[str, Placement]]:
        plan = self._plan
        assert plan is not None
        places = plan.placements or [
            # A foundation from before multi-AZ subnets: its one private subnet, zone unknown.
            Placement(subnet_id=plan.parameters.get("PrivateSubnetId", ""), availability_zone="")
        ]
        return attempt_order(self._in.config.compute_types, places)

    @property
    def _compute_type(self) -> str:
        """The compute type of the stack that runs (billing and the registry follow it)."""
        return self._rt.compute_instance_type or self._in.config.compute_types[0]

    def _first_attempt(self, plan: ClusterPlan) -> dict[str, str]:
        """Record attempt 1 (state only: no command) and return its stack parameters."""
        self._plan = plan
        itype, place = self._order()[0]
        self._rt.attempts = [self._attempt(1, itype, place)]
        return self._parameters(itype, place)

    def _parameters(self, itype: str, place: Placement) -> dict[str, str]:
        assert self._plan is not None
        return {
            **self._plan.parameters,
            "ComputeInstanceType": itype,
            "PrivateSubnetId": place.subnet_id,
        }

    def _attempt(self, n: int, itype: str, place: Placement) -> CapacityAttempt:
        self._rt.compute_instance_type = itype
        workflow.logger.info(
            f"creation attempt {n}: {itype} in {place.availability_zone or place.subnet_id}",
            extra={"org_id": self._in.org_id, "cluster": self._in.name},
        )
        return CapacityAttempt(
            number=n,
            compute_instance_type=itype,
            availability_zone=place.availability_zone,
            subnet_id=place.subnet_id,
        )

    async def _explain_bootstrap_failure(self, poll: StackPoll) -> None:
        """A head node that never signalled readiness: add its console output's tail to the reason."""
        rt = self._rt
        if not bootstrap_failed(poll.failure_resource, poll.failure_reason):
            return
        if not _patches.patched("head-console-on-failure"):
            return
        try:
            tail: ConsoleTail = await acts.head_console_tail(
                ConsoleTailInput(
                    org_id=self._in.org_id, region=self._in.region, stack_name=rt.stack_name
                ),
                summary="read the head node's console output",
                **AWS_CALL,
            )
        except ActivityError as e:
            rt.failure_reason = (
                f"{rt.failure_reason} (console output unavailable: {root_message(e)})"
            )
            return
        if not tail.lines:
            rt.failure_reason = f"{rt.failure_reason} (console output of {tail.instance_id or 'the head node'} is empty or gone)"
            return
        rt.failure_reason = (
            f"{rt.failure_reason}\nhead node {tail.instance_id} console output, last {len(tail.lines)} lines:\n"
            + "\n".join(tail.lines)
        )

    async def _next_attempt(self, poll: StackPoll) -> bool:
        """After a failed attempt: True if another attempt was started (or a cancel is pending),
        False if the cluster fails with ``failure_reason``."""
        rt = self._rt
        if self._plan is None or not _patches.patched("capacity-failover"):
            return False
        reasons = [poll.failure_reason or ""] + [
            e.reason for e in poll.events if e.status.endswith("FAILED")
        ]
        code = capacity_error(reasons)
        order = self._order()
        if not rt.attempts:  # a run that was already creating when this code was deployed
            rt.attempts = [self._attempt(1, *order[0])]
        current = rt.attempts[-1]
        current.outcome, current.error_code = ("capacity" if code else "failed"), code
        current.reason = (
            f"{poll.failure_resource or 'the stack'}: {poll.failure_reason or poll.status}"
        )
        n = len(rt.attempts)
        if code is None or self._stop_creating():
            return False
        if n >= len(order):
            rt.failure_reason = (
                f"{rt.failure_reason} (no capacity left to try: {n} attempts over "
                f"{len(self._in.config.compute_types)} instance types and "
                f"{len(order) // len(self._in.config.compute_types)} Availability Zones)"
            )
            workflow.logger.warning(
                f"capacity failover exhausted after {n} attempts",
                extra={"org_id": self._in.org_id, "cluster": self._in.name},
            )
            return False
        itype, place = order[n]
        workflow.logger.warning(
            f"attempt {n} ({current.compute_instance_type} in {current.availability_zone}) failed: "
            f"{code}; deleting it, then trying {itype} in {place.availability_zone}",
            extra={"org_id": self._in.org_id, "cluster": self._in.name},
        )
        # The failed stack goes first: the next attempt reuses its (deterministic) name.
        ref = StackRef(
            org_id=self._in.org_id,
            region=self._in.region,
            stack_name=rt.stack_name,
            expect="delete",
            client_request_token=request_token(f"capacity-delete-{n}"),
        )
        await acts.delete_stack(
            ref, summary=f"{code}: delete failed attempt {n} before the next", **AWS_CALL
        )
        gone = await wait_for_stack(ref, None, f"wait for deletion of attempt {n}")
        if not gone.succeeded:
            rt.failure_reason = f"{rt.failure_reason} (the failed attempt could not be deleted: {gone.failure_reason or gone.status})"
            return False
        if self._stop_creating():
            return True  # the caller's wait sees the cancel and ends CANCELLED
        rt.attempts.append(self._attempt(n + 1, itype, place))
        rt.failure_resource = rt.failure_reason = None
        rt.events = []
        try:
            await acts.create_stack(
                StackRequest(
                    org_id=self._in.org_id,
                    region=self._in.region,
                    stack_name=rt.stack_name,
                    **self._plan.template_fields(),
                    parameters=self._parameters(itype, place),
                    tags=self._plan.tags,
                    client_request_token=request_token(f"cluster-create-{n + 1}"),
                    keep_on_failure=self._in.keep_failed_stack,
                ),
                summary=f"attempt {n + 1}: create stack with {itype} in {place.availability_zone or place.subnet_id}",
                **AWS_CALL,
            )
        except ActivityError as e:
            rt.failure_reason = root_message(e)
            rt.attempts[-1].outcome, rt.attempts[-1].reason = "failed", rt.failure_reason
            return False
        return True
