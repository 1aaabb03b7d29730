"""Platform images: find, copy to regions that lack them, share with (and revoke from) customers.

All calls run in the platform account, which owns the images.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws, not_found
from activities.errors import aws_errors, error_code
from activities.registry import Registry
from bridgehead import org_access
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    CopyImageInput,
    FindImageInput,
    FindImageResult,
    ImageInRegion,
    OrgRegions,
    OrgRegionsInput,
    ShareImageInput,
    ShareImageResult,
)
from bridgehead.polling import still_waiting

log = get_logger("bridgehead.activities.images")
COPIED_FROM_TAG = "bridgehead:copied-from"


class ImageActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    def _ec2(self, region: str) -> Any:
        return self.aws.platform("ec2", region)

    @activity.defn
    def org_regions(self, req: OrgRegionsInput) -> OrgRegions:
        org = self.registry.org(req.org_id)
        return OrgRegions(
            org_id=org.org_id,
            aws_account_id=org.aws_account_id,
            regions=org.regions,
            source_region=self.aws.settings.image_source_region,
        )

    def _released(self, region: str) -> list[dict[str, Any]]:
        s = self.aws.settings
        with aws_errors(f"ec2:DescribeImages in {region}"):
            images = self._ec2(region).describe_images(
                Owners=["self"],
                Filters=[{"Name": f"tag:{s.image_tag_key}", "Values": [s.image_tag_value]}],
            )["Images"]
        return sorted(images, key=lambda i: i.get("CreationDate", ""), reverse=True)

    @activity.defn
    def find_platform_image(self, req: FindImageInput) -> FindImageResult:
        """The newest released platform image in a region, if any."""
        bind_subject(region=req.region)
        images = self._released(req.region)
        if not images:
            return FindImageResult(image_id=None)
        img = images[0]
        return FindImageResult(
            image_id=img["ImageId"], name=img.get("Name"), state=img.get("State")
        )

    @activity.defn
    def copy_platform_image(self, req: CopyImageInput) -> ImageInRegion:
        """CopyImage, idempotently: an earlier copy of the same source (found by its deterministic
        name or its copied-from tag) is reused, because CopyImage's ClientToken is not honoured by
        every endpoint."""
        bind_subject(region=req.region)
        s = self.aws.settings
        src = self._ec2(req.source_region)
        with aws_errors(f"ec2:DescribeImages {req.source_image_id} in {req.source_region}"):
            found = src.describe_images(ImageIds=[req.source_image_id])["Images"]
        if not found:
            raise not_found(
                f"source image {req.source_image_id} no longer exists in {req.source_region}"
            )
        name = f"{found[0].get('Name', 'bridgehead')}-from-{req.source_region}"[:128]
        dst = self._ec2(req.region)
        with aws_errors(f"ec2:DescribeImages in {req.region}"):
            existing = dst.describe_images(
                Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
            )["Images"]
            existing += dst.describe_images(
                Owners=["self"],
                Filters=[{"Name": f"tag:{COPIED_FROM_TAG}", "Values": [req.source_image_id]}],
            )["Images"]
        if existing:
            image_id = existing[0]["ImageId"]
        else:
            tags = [
                {"Key": s.image_tag_key, "Value": s.image_tag_value},
                {"Key": COPIED_FROM_TAG, "Value": req.source_image_id},
            ]
            with aws_errors(
                f"ec2:CopyImage {req.source_image_id} {req.source_region} -> {req.region}"
            ):
                try:
                    image_id = dst.copy_image(
                        Name=name,
                        SourceImageId=req.source_image_id,
                        SourceRegion=req.source_region,
                        ClientToken=req.client_token[:64],
                        TagSpecifications=[{"ResourceType": "image", "Tags": tags}],
                    )["ImageId"]
                except ClientError as e:
                    if error_code(e) != "InvalidAMIName.Duplicate":
                        raise
                    image_id = dst.describe_images(
                        Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
                    )["Images"][0]["ImageId"]
                dst.create_tags(Resources=[image_id], Tags=tags)
        log.info("image copied", region=req.region, image_id=image_id, source=req.source_image_id)
        return ImageInRegion(region=req.region, image_id=image_id)

    @activity.defn
    def wait_image_available(self, req: ImageInRegion) -> ImageInRegion:
        """Infrequent polling: benign retryable failure while ``pending``; permanent on ``failed``."""
        bind_subject(region=req.region)
        with aws_errors(f"ec2:DescribeImages {req.image_id} in {req.region}", just_created=True):
            images = self._ec2(req.region).describe_images(ImageIds=[req.image_id])["Images"]
        state = images[0]["State"] if images else "missing"
        if state == "available":
            return req
        if state in ("pending", "transient"):
            raise still_waiting(f"image {req.image_id} is {state}", "ImagePending")
        reason = images[0].get("StateReason", {}).get("Message", "") if images else "it disappeared"
        raise ApplicationError(
            f"image copy {req.image_id} in {req.region} ended {state}: {reason}",
            type="ImageCopyFailed",
            non_retryable=True,
        )

    def _snapshots(self, region: str, image_id: str) -> list[str]:
        with aws_errors(f"ec2:DescribeImages {image_id} in {region}"):
            images = self._ec2(region).describe_images(ImageIds=[image_id])["Images"]
        if not images:
            raise not_found(f"image {image_id} does not exist in {region}")
        return [
            bdm["Ebs"]["SnapshotId"]
            for bdm in images[0].get("BlockDeviceMappings", [])
            if bdm.get("Ebs", {}).get("SnapshotId")
        ]

    @activity.defn
    def share_image(self, req: ShareImageInput) -> ShareImageResult:
        """Launch permission on the image and create-volume permission on its snapshots for the
        org's account (AWS treats a repeated grant as a no-op, so retries are safe)."""
        bind_subject(org_id=req.org_id, region=req.region)
        org = self.registry.org(req.org_id)
        why = org_access.refusal(
            "share images", org.org_id, org.state, org.regions, req.region, req.by_org
        )
        if why is not None:
            raise ApplicationError(why, type="BadInput", non_retryable=True)
        ec2 = self._ec2(req.region)
        snapshots = self._snapshots(req.region, req.image_id)
        # The image (and its snapshots) may have been copied here moments ago.
        with aws_errors(
            f"ec2:ModifyImageAttribute {req.image_id} in {req.region}", just_created=True
        ):
            ec2.modify_image_attribute(
                ImageId=req.image_id, LaunchPermission={"Add": [{"UserId": org.aws_account_id}]}
            )
            for snap in snapshots:
                ec2.modify_snapshot_attribute(
                    SnapshotId=snap,
                    Attribute="createVolumePermission",
                    OperationType="add",
                    UserIds=[org.aws_account_id],
                )
        previous = self.registry.image_share(req.org_id, req.region) or {}
        if (
            previous.get("state") == "SHARED"
            and previous.get("image_id") not in (None, req.image_id)
            and self.registry.shared_image(req.org_id, req.region, previous["image_id"]) is None
        ):
            # Shared before every share was recorded: remember it before the record moves on.
            self.registry.record_shared_image(
                req.org_id,
                req.region,
                previous["image_id"],
                list(previous.get("snapshot_ids") or []),
                org.aws_account_id,
            )
        self.registry.put_image_share(
            req.org_id,
            req.region,
            {
                "image_id": req.image_id,
                "snapshot_ids": snapshots,
                "state": "SHARED",
                "account": org.aws_account_id,
                "updated_at": datetime.now(UTC).isoformat(),
            },
        )
        # Every image ever shared is remembered, so offboarding revokes old releases too.
        self.registry.record_shared_image(
            req.org_id, req.region, req.image_id, snapshots, org.aws_account_id
        )
        log.info("image shared", image_id=req.image_id, snapshots=snapshots)
        return ShareImageResult(image_id=req.image_id, snapshot_ids=snapshots)

    @activity.defn
    def revoke_image(self, req: ShareImageInput) -> ShareImageResult:
        """Remove every permission :meth:`share_image` granted on ``req.image_id`` (offboarding,
        and a replaced release). The current-image record moves to REVOKED only if it names this
        image: revoking an older release leaves the image new clusters launch from alone."""
        bind_subject(org_id=req.org_id, region=req.region)
        org = self.registry.org(req.org_id)
        current = self.registry.image_share(req.org_id, req.region) or {}
        recorded = self.registry.shared_image(req.org_id, req.region, req.image_id) or {}
        if current.get("image_id") == req.image_id and current.get("snapshot_ids"):
            snapshots = list(current["snapshot_ids"])
        elif recorded.get("snapshot_ids"):
            snapshots = list(recorded["snapshot_ids"])
        else:
            snapshots = self._snapshots_if_any(req.region, req.image_id)
        ec2 = self._ec2(req.region)
        users = self.sharing_siblings(req.org_id, org.aws_account_id, req.region, req.image_id)
        if users:
            # The grant is the account's, and another organisation in this shared account still
            # launches from the image: only this organisation's record is revoked.
            log.info(
                "image kept shared: other organisations of the account use it",
                image_id=req.image_id,
                organisations=users,
            )
            snapshots = []
        with aws_errors(f"ec2:ModifyImageAttribute (remove) {req.image_id} in {req.region}"):
            try:
                if not users:
                    ec2.modify_image_attribute(
                        ImageId=req.image_id,
                        LaunchPermission={"Remove": [{"UserId": org.aws_account_id}]},
                    )
                for snap in snapshots:
                    ec2.modify_snapshot_attribute(
                        SnapshotId=snap,
                        Attribute="createVolumePermission",
                        OperationType="remove",
                        UserIds=[org.aws_account_id],
                    )
            except ClientError as e:
                if not error_code(e).endswith(".NotFound"):
                    raise
        if recorded:
            self.registry.mark_image_revoked(req.org_id, req.region, req.image_id)
        if not current or current.get("image_id") in (None, req.image_id):
            self.registry.update_image_share(
                req.org_id, req.region, {"state": "REVOKED", "image_id": req.image_id}
            )
        return ShareImageResult(image_id=req.image_id, snapshot_ids=snapshots)

    def sharing_siblings(self, org_id: str, account: str, region: str, image_id: str) -> list[str]:
        """Other organisations of a shared AWS account, not offboarded, that hold ``image_id`` in
        ``region`` (launch permissions are granted to the account, not to an organisation)."""
        claim = self.registry.account_claim(account) or {}
        users = []
        for other in sorted(set(claim.get("orgs") or []) - {org_id}):
            if (self.registry.org_item(other) or {}).get("state") in ("OFFBOARDED", None):
                continue
            current = self.registry.image_share(other, region) or {}
            held = current.get("image_id") == image_id and current.get("state") != "REVOKED"
            recorded = self.registry.shared_image(other, region, image_id) or {}
            if held or (recorded and recorded.get("state") != "REVOKED"):
                users.append(other)
        return users

    def _snapshots_if_any(self, region: str, image_id: str) -> list[str]:
        """The image's snapshots; none if the image is gone (deregistered: nothing to revoke)."""
        try:
            return self._snapshots(region, image_id)
        except ApplicationError as e:
            if not e.non_retryable:
                raise
            return []
