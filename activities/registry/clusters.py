"""Registry records of clusters (``ORG#<org>`` / ``CLUSTER#<name>``)."""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from activities.registry.store import RegistryStore, _to_item, org_pk


class ClusterRecords(RegistryStore):
    """A cluster's record: region, state, owning workflow, billing bookkeeping."""

    # --- clusters -------------------------------------------------------------------------------
    def clusters(self, org_id: str) -> list[dict[str, Any]]:
        return self.query(org_pk(org_id), "CLUSTER#")

    def cluster(self, org_id: str, name: str) -> dict[str, Any] | None:
        return self.get(org_pk(org_id), f"CLUSTER#{name}")

    def create_cluster(
        self, org_id: str, name: str, region: str, fields: dict[str, Any], run_id: str
    ) -> ApplicationError | None:
        """Write a new cluster record, in one transaction with the check that the region's
        foundation is READY (so it cannot race with CleanupRegion). Refused (nothing written, the
        refusal returned) when the foundation is not READY or a cluster of that name exists that
        is not DELETED or CANCELLED and was not written by this run (``run_id``)."""
        pk = org_pk(org_id)
        return self._transact(
            "register cluster",
            [
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": _to_item({"pk": pk, "sk": f"REGION#{region}"}),
                        "ConditionExpression": "#s = :ready",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": _to_item({":ready": "READY"}),
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _to_item({"pk": pk, "sk": f"CLUSTER#{name}", **fields}),
                        "ConditionExpression": "attribute_not_exists(pk) OR workflow_run = :run OR #s IN (:d, :c)",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": _to_item(
                            {":run": run_id, ":d": "DELETED", ":c": "CANCELLED"}
                        ),
                    }
                },
            ],
        )

    def transition_cluster(
        self, org_id: str, name: str, target: str, fields: dict[str, Any], *, workflow_id: str
    ) -> None:
        """Move the cluster to ``target`` (:meth:`transition`), only if ``workflow_id`` owns it."""
        self.transition(
            "cluster",
            org_pk(org_id),
            f"CLUSTER#{name}",
            target,
            fields,
            subject=f"{org_id}/{name}",
            require={"workflow_id": workflow_id},
        )

    def update_cluster(self, org_id: str, name: str, fields: dict[str, Any]) -> None:
        """Set attributes of a cluster that are not its state (billing bookkeeping)."""
        self.update(org_pk(org_id), f"CLUSTER#{name}", fields)

    def put_cluster(self, org_id: str, name: str, fields: dict[str, Any]) -> None:
        """Write a cluster as given, unconditionally (seeding for benchmarks; clusters use
        :meth:`create_cluster` and :meth:`transition_cluster`)."""
        self.put({"pk": org_pk(org_id), "sk": f"CLUSTER#{name}", **fields})
