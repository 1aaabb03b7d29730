"""Small deterministic helpers shared by workflows."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError

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


async def call(name: str, arg: object, result_type: type | None = None, *, summary: str | None = None, **options: object):  # type: ignore[no-untyped-def]
    """Execute an activity by its registered name.

    Workflows name activities instead of importing the activity classes, so no boto3 module ever
    enters the workflow sandbox (it stops the worker from starting and slows every workflow).
    """
    return await workflow.execute_activity(name, arg, result_type=result_type, summary=summary, **options)  # type: ignore[arg-type]


def require_payload(value: object, update: str, example: str) -> None:
    """Refuse an update sent without its payload with a message that shows what to send (instead
    of Python's "missing 1 required positional argument")."""
    if value is None:
        raise ApplicationError(f"{update} needs a JSON payload, for example {example}", type="BadInput")
