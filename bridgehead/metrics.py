"""Bridgehead's own metrics, published on the worker's Prometheus endpoint next to the SDK's.

Recorded through the Temporal SDK's metric meter, so they need no second exporter:

- in activities (``activity.metric_meter()``): ``bridgehead_aws_errors`` by AWS error code and
  class, ``bridgehead_billed_node_minutes`` by instance type (only for ledger entries actually
  written, never for a retried or replayed period);
- in workflows (``workflow.metric_meter()``, which records nothing while a workflow replays):
  ``bridgehead_cluster_transitions`` by state entered and ``bridgehead_verification_failures`` by
  failed check;
- in the worker process: the gauge ``bridgehead_clusters`` by state, counted from Temporal's
  visibility store (``ClusterStatus`` search attribute) every ``metrics_refresh_seconds``.

Outside a worker (unit tests, the starter) every call here is a no-op.
"""

from __future__ import annotations

from temporalio import activity, workflow
from temporalio.common import MetricMeter

DESCRIPTIONS = {
    "bridgehead_aws_errors": "AWS API errors seen by activities, by error code and class (retryable or not)",
    "bridgehead_billed_node_minutes": "Node-minutes written to the billing ledger, by instance type",
    "bridgehead_cluster_transitions": "Cluster lifecycle state changes, by state entered",
    "bridgehead_verification_failures": "Failed role-verification checks, by check",
    "bridgehead_illegal_transitions": "Registry state writes refused by the state machine, by kind and target",
    "bridgehead_clusters": "Clusters by lifecycle state (from Temporal visibility)",
}


def _meter() -> MetricMeter | None:
    if activity.in_activity():
        return activity.metric_meter()
    if workflow.in_workflow():
        return workflow.metric_meter()
    return None


def count(name: str, value: int = 1, **attributes: str) -> None:
    """Add ``value`` to the counter ``name`` with the given attributes (labels)."""
    meter = _meter()
    if meter is None or value <= 0:
        return
    meter.create_counter(name, DESCRIPTIONS.get(name)).add(value, dict(attributes))


def set_gauge(meter: MetricMeter, name: str, value: int, **attributes: str) -> None:
    meter.create_gauge(name, DESCRIPTIONS.get(name)).set(value, dict(attributes))
