"""Small deterministic helpers shared by workflows."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

from temporalio import workflow
from temporalio.common import (
    RawValue,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from bridgehead import ids, runs

ORG_ID = SearchAttributeKey.for_keyword("OrgId")
CLUSTER_NAME = SearchAttributeKey.for_keyword("ClusterName")
CLUSTER_STATUS = SearchAttributeKey.for_keyword("ClusterStatus")
REGION = SearchAttributeKey.for_keyword("Region")

_KEYS = {"org_id": ORG_ID, "cluster": CLUSTER_NAME, "status": CLUSTER_STATUS, "region": REGION}


def search_attributes(**values: str) -> TypedSearchAttributes:
    """Typed search attributes for starting workflows (keys: org_id, cluster, status, region)."""
    return TypedSearchAttributes([SearchAttributePair(_KEYS[k], v) for k, v in values.items()])


def upsert(**values: str) -> None:
    """Upsert only the attributes whose value changed (each upsert is a history event)."""
    current = workflow.info().typed_search_attributes
    updates = [_KEYS[k].value_set(v) for k, v in values.items() if current.get(_KEYS[k]) != v]
    if updates:
        workflow.upsert_search_attributes(updates)


def request_token(step: str) -> str:
    """Deterministic ClientRequestToken for one step of this workflow execution chain.

    Here, not in ``workflows.regions``: a module of helpers only, so a workflow that makes stack
    requests (a cluster lifecycle) does not import another workflow type into each run's sandbox."""
    info = workflow.info()
    digest = hashlib.sha256(
        f"{info.workflow_id}/{info.first_execution_run_id}/{step}".encode()
    ).hexdigest()[:40]
    return f"bh-{step[:20]}-{digest}".replace("_", "-")


def root_message(err: BaseException) -> str:
    """The innermost failure message, for status fields and reports."""
    while isinstance(err, ActivityError | ChildWorkflowError) and err.cause is not None:
        err = err.cause
    if isinstance(err, FailureError):
        return err.message
    return str(err)


def root_type(err: BaseException) -> str | None:
    while isinstance(err, ActivityError | ChildWorkflowError) and err.cause is not None:
        err = err.cause
    return err.type if isinstance(err, ApplicationError) else None


def require_payload(value: object, update: str, example: str) -> None:
    """Refuse an update sent without its payload with a message that shows what to send (instead
    of Python's "missing 1 required positional argument")."""
    if value is None:
        raise ApplicationError(
            f"{update} needs a JSON payload, for example {example}", type="BadInput"
        )


def require_input(value: object, workflow_type: str, example: str) -> None:
    """Fail a run started without input at once, showing the JSON to send (instead of a workflow
    task retried forever on "missing 1 required positional argument")."""
    if value is None:
        raise ApplicationError(
            f"{workflow_type} needs a JSON input, for example {example} "
            f"(`python -m starter schema {workflow_type}` prints every field)",
            type="BadInput",
            non_retryable=True,
        )


def bind_input(
    expected_id: str,
    *,
    scheduled: bool = False,
    carried: dict[str, object] | None = None,
    fresh_allowed: Collection[str] = (),
) -> None:
    """Refuse a run whose input does not belong to it: the workflow id must be the one computed
    from the input (``bridgehead.ids``), and internal state (``carried``: field name -> value) is
    accepted only by a run continued from a previous run of the same workflow (or, for the fields
    in ``fresh_allowed``, where the caller proved otherwise that it is the platform itself).

    Checks only, no command: a legitimate run, running or replayed, passes without a trace in
    its history, so running workflows need no ``workflow.patched`` for it.
    """
    info = workflow.info()
    refuse_cron()
    try:
        ids.check_workflow_id(info.workflow_id, expected_id, scheduled=scheduled)
    except ids.WorkflowIdMismatch as e:
        raise ApplicationError(str(e), type="WorkflowIdMismatch", non_retryable=True) from None
    sent = sorted(
        k
        for k, v in (carried or {}).items()
        if v not in (None, False, [], {}) and k not in fresh_allowed
    )
    if sent and not continued_by_itself():
        raise ApplicationError(
            f"{', '.join(sent)}: internal state that only continue-as-new carries; a new start cannot set it. "
            "Remove it from the input.",
            type="BadInput",
            non_retryable=True,
        )


def started_by(parent_id: str) -> bool:
    """Whether this run is a child of the workflow ``parent_id``: known from the server, never
    from input (only a workflow can start a child, and only Bridgehead's run on this queue)."""
    parent = workflow.info().parent
    return parent is not None and parent.workflow_id == parent_id


def continued_by_itself() -> bool:
    """This run was continued as new by the previous run of this workflow (not a cron run or a
    retry, which carry the caller's input again): :func:`bridgehead.runs.continued_by_itself`."""
    info = workflow.info()
    return runs.continued_by_itself(info.continued_run_id, info.cron_schedule, info.attempt)


def refuse_cron() -> None:
    """Refuse a run started with a cron schedule (:func:`bridgehead.runs.cron_refusal`)."""
    why = runs.cron_refusal(workflow.info().cron_schedule)
    if why:
        raise ApplicationError(why, type="BadInput", non_retryable=True)


def unknown_request(name: str, kind: str, known: tuple[str, ...]) -> str:
    """The words for a signal or update this workflow does not have (a typo, usually)."""
    close = [k for k in known if k.lower() == name.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    verb = "ignored" if kind == "signal" else "refused"
    return f"unknown {kind} {name!r} {verb}{hint}; this workflow accepts {kind}s: {', '.join(known) or 'none'}"


class ReportsUnknownRequests:
    """Mixin for long-lived workflows: a signal they do not know (a misspelled ``Delete``) is
    recorded in ``self._unknown`` (shown by ``status``) and logged, never silently dropped; an
    unknown update is refused by its validator, naming the updates that exist."""

    KNOWN_SIGNALS: tuple[str, ...] = ()
    KNOWN_UPDATES: tuple[str, ...] = ()
    _unknown: list[str]

    def _log_subject(self) -> dict[str, str]:
        return {}

    @workflow.signal(dynamic=True)
    def _unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        self._unknown.append(unknown_request(name, "signal", self.KNOWN_SIGNALS))
        del self._unknown[:-20]
        workflow.logger.warning(self._unknown[-1], extra=self._log_subject())

    @workflow.update(dynamic=True)
    async def _unknown_update(self, name: str, args: Sequence[RawValue]) -> None:
        raise ApplicationError(unknown_request(name, "update", self.KNOWN_UPDATES), type="BadInput")

    @_unknown_update.validator
    def _refuse_unknown_update(self, name: str, args: Sequence[RawValue]) -> None:
        raise ApplicationError(unknown_request(name, "update", self.KNOWN_UPDATES), type="BadInput")
