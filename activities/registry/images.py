"""Registry records of image releases: every image shared with an organisation (offboarding
revokes each), the releases and the current one, and which clusters keep an image in use.
``ORG#<org>`` / ``IMAGE#<region>`` (the image new clusters launch from) stays in
:mod:`activities.registry.orgs`; a cluster's ``image_id`` is written with its record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from activities.errors import aws_errors
from activities.registry.store import RegistryStore, _from_item, org_pk

#: Cluster states whose stack no longer exists (or never did): such a cluster uses no image.
GONE_CLUSTER_STATES = ("DELETED", "CANCELLED", "FAILED")


class ImageRecords(RegistryStore):
    """``ORG#<org>`` / ``SHARED#<region>#<image>``, ``RELEASE#<version>`` and ``RELEASES`` /
    ``CURRENT``: every image shared with an organisation, and image releases."""

    # --- every image shared with an organisation ------------------------------------------------
    def record_shared_image(
        self, org_id: str, region: str, image_id: str, snapshot_ids: list[str], account: str
    ) -> None:
        """Remember that ``image_id`` was shared with the org in ``region`` (idempotent)."""
        self.put(
            {
                "pk": org_pk(org_id),
                "sk": f"SHARED#{region}#{image_id}",
                "region": region,
                "image_id": image_id,
                "snapshot_ids": snapshot_ids,
                "account": account,
                "state": "SHARED",
                "updated_at": datetime.now(UTC).isoformat(),
            }
        )

    def shared_image(self, org_id: str, region: str, image_id: str) -> dict[str, Any] | None:
        return self.get(org_pk(org_id), f"SHARED#{region}#{image_id}")

    def mark_image_revoked(self, org_id: str, region: str, image_id: str) -> None:
        """Mark a recorded share REVOKED (only if it was recorded)."""
        self.update(
            org_pk(org_id),
            f"SHARED#{region}#{image_id}",
            {"state": "REVOKED", "updated_at": datetime.now(UTC).isoformat()},
            condition="attribute_exists(pk)",
        )

    def shared_images(self, org_id: str) -> list[dict[str, Any]]:
        """Every recorded share of the org (``region``, ``image_id``, ``state``, ...)."""
        return self.query(org_pk(org_id), "SHARED#")

    # --- releases -------------------------------------------------------------------------------
    def release(self, version: str) -> dict[str, Any] | None:
        return self.get(f"RELEASE#{version}", "META")

    def begin_release(self, version: str, images: dict[str, str]) -> dict[str, Any]:
        """Record the release and make it current; returns its record, whose ``replaces`` and
        ``previous_images`` name the release it replaced (fixed at the first call: a retry or a
        resumed run gets the same answer)."""
        existing = self.release(version)
        if existing is not None:
            return existing
        current = self.get("RELEASES", "CURRENT")
        previous = current.get("version") if current else None
        prev_record = self.release(previous) if previous else None
        record = {
            "pk": f"RELEASE#{version}",
            "sk": "META",
            "version": version,
            "images": dict(images),
            "replaces": previous,
            "previous_images": dict((prev_record or {}).get("images", {})),
            "published_at": datetime.now(UTC).isoformat(),
        }
        if not self.put(record, condition="attribute_not_exists(pk)"):
            # A concurrent attempt recorded it first: its answer is the answer.
            return self.release(version) or record
        self.put({"pk": "RELEASES", "sk": "CURRENT", "version": version})
        return record

    def record_release_image(self, version: str, region: str, image_id: str) -> None:
        """Add a region's image (a copy) to the release, so its successor revokes it too. One
        map entry per call (concurrent copies in other regions are not overwritten)."""
        with aws_errors("registry update"):
            self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"RELEASE#{version}"}, "sk": {"S": "META"}},
                UpdateExpression="SET #images.#region = :image",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#images": "images", "#region": region},
                ExpressionAttributeValues={":image": {"S": image_id}},
            )

    # --- organisations and clusters -------------------------------------------------------------
    def orgs_page(self, after: str | None, limit: int, states: tuple[str, ...] | None) -> list[Any]:
        """Organisations (``org_id``, ``regions``, ``state``) in id order after ``after``, at most
        ``limit`` + 1 (the extra one says whether there are more). A consistent scan of the table:
        every page reads it whole, which is fine for thousands of organisations."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "sk = :meta AND begins_with(pk, :org)",
            "ExpressionAttributeValues": {":meta": {"S": "META"}, ":org": {"S": "ORG#"}},
        }
        with aws_errors("registry scan"):
            while True:
                resp = self.ddb.scan(**kwargs)
                items.extend(_from_item(i) for i in resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        orgs = sorted(
            (i for i in items if states is None or i.get("state") in states),
            key=lambda i: str(i["org_id"]),
        )
        return [o for o in orgs if after is None or str(o["org_id"]) > after][: limit + 1]

    def clusters_using(self, org_id: str, region: str, image_id: str) -> list[str]:
        """Names of the org's clusters in ``region`` whose stack may still use ``image_id``: those
        recorded with it, and (conservatively) live ones recorded before images were recorded."""
        return sorted(
            str(c.get("name"))
            for c in self.query(org_pk(org_id), "CLUSTER#")
            if c.get("region") == region
            and c.get("state") not in GONE_CLUSTER_STATES
            and c.get("image_id", image_id) == image_id
        )
