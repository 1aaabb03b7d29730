"""A controllable CloudFormation for the waiting benchmark: every stack stays CREATE_IN_PROGRESS
until released. The poll activities behave as the real ones (``poll_stack``: a benign retryable
error while in progress, the in-progress state on the last attempt of a polling window;
``check_stack``: one look, in progress or not) and count how many
activity executions are in flight at any moment: the worker slots the waiting holds."""

from __future__ import annotations

import threading
from typing import Any

from temporalio import activity

from activities.cloudformation import last_attempt_in_window, still_in_progress
from bridgehead import models as m


class HeldStacks:
    def __init__(self) -> None:
        self.released = False
        self.created: set[str] = set()
        self.polls = 0
        self.in_flight = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def activities(self) -> list[Any]:
        held = self

        @activity.defn(name="validate_cluster")
        def validate_cluster(req: m.ValidateClusterInput) -> m.ClusterPlan:
            return m.ClusterPlan(
                template_body="{}",
                parameters={},
                tags={"bridgehead:org": req.org_id},
                admin_email="ops@bench.example",
            )

        @activity.defn(name="check_vcpu_quota")
        def check_vcpu_quota(req: m.QuotaCheckInput) -> m.QuotaReport:
            return m.QuotaReport(region=req.region, available=False)

        @activity.defn(name="register_cluster")
        def register_cluster(req: m.RegisterClusterInput) -> None:
            return None

        @activity.defn(name="notify")
        def notify(req: m.NotifyInput) -> bool:
            return True

        @activity.defn(name="create_stack")
        def create_stack(req: m.StackRequest) -> m.StackPoll:
            with held._lock:
                held.created.add(req.stack_name)
            return m.StackPoll(
                stack_name=req.stack_name,
                stack_id=req.stack_name,
                status="CREATE_IN_PROGRESS",
                terminal=False,
                succeeded=False,
            )

        @activity.defn(name="delete_stack")
        def delete_stack(ref: m.StackRef) -> None:
            with held._lock:
                held.created.discard(ref.stack_name)

        @activity.defn(name="poll_stack")
        def poll_stack(ref: m.StackRef) -> m.StackPoll:
            return look(ref, last_attempt_in_window)

        @activity.defn(name="check_stack")
        def check_stack(ref: m.StackRef) -> m.StackPoll:
            """The event-driven wait's one look (workflows/_waiting.py)."""
            return look(ref, lambda: True)

        def look(ref: m.StackRef, give_up: Any) -> m.StackPoll:
            held._enter()
            try:
                with held._lock:
                    held.polls += 1
                    exists = ref.stack_name in held.created
                if ref.expect == "delete" and not exists:
                    return m.StackPoll(
                        stack_name=ref.stack_name,
                        stack_id=None,
                        status="DELETE_COMPLETE",
                        terminal=True,
                        succeeded=True,
                    )
                if held.released:
                    return m.StackPoll(
                        stack_name=ref.stack_name,
                        stack_id=ref.stack_name,
                        status="CREATE_COMPLETE",
                        terminal=True,
                        succeeded=True,
                        outputs={"LoginAddress": "203.0.113.7"},
                    )
                if give_up():
                    return m.StackPoll(
                        stack_name=ref.stack_name,
                        stack_id=ref.stack_name,
                        status="CREATE_IN_PROGRESS",
                        terminal=False,
                        succeeded=False,
                    )
                raise still_in_progress(ref.stack_name, "CREATE_IN_PROGRESS")
            finally:
                held._leave()

        return [
            validate_cluster,
            check_vcpu_quota,
            register_cluster,
            notify,
            create_stack,
            delete_stack,
            poll_stack,
            check_stack,
        ]
