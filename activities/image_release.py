"""Image releases: record a release, list the organisations it goes to, revoke the release it
replaced where no running cluster uses it. Sharing and copying reuse
:class:`activities.images.ImageActivities` (``share_image``, ``copy_platform_image``,
``wait_image_available``, ``revoke_image``).

All calls run in the platform account (registry, and the images it owns).
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import aws_errors, error_code
from activities.images import ImageActivities
from activities.registry import Registry
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    BeginReleaseInput,
    ImageInRegion,
    OrgRegionsInput,
    ReleaseImageInput,
    ReleaseOrg,
    ReleaseOrgs,
    ReleaseOrgsInput,
    ReleasePlan,
    ReleaseStep,
    RevokeReplacedInput,
    RevokeReplacedResult,
    SharedImages,
    ShareImageInput,
)

log = get_logger("bridgehead.activities.image_release")


class ImageReleaseActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry
        self._grants = ImageActivities(aws, registry)

    @activity.defn
    def begin_image_release(self, req: BeginReleaseInput) -> ReleasePlan:
        """Record the release and make it current (idempotent: a retry or a resumed run gets the
        release it replaced from the first call), with the settings the workflow runs on."""
        s = self.aws.settings
        for region, image in sorted(req.images.items()):
            self._require_release_image(region, image)
        record = self.registry.begin_release(req.version, req.images)
        recorded = record.get("images") or {}
        changed = sorted(r for r, image in req.images.items() if recorded.get(r) != image)
        if changed:
            # One version, one set of images: a second start may resume it, never redefine it.
            raise ApplicationError(
                f"release {req.version} was recorded with other images in {', '.join(changed)} "
                f"({', '.join(f'{r}: {recorded.get(r)}' for r in changed)}); release them as a new version",
                type="ReleaseMismatch",
                non_retryable=True,
            )
        previous = record.get("replaces")
        source = s.image_source_region if s.image_source_region in req.images else min(req.images)
        log.info("image release recorded", version=req.version, replaces=previous)
        return ReleasePlan(
            source_region=source,
            previous_version=previous,
            previous_images=dict(record.get("previous_images") or {}) if previous else {},
            concurrency=s.image_release_concurrency,
            grace_seconds=round(s.image_release_grace_hours * 3600),
        )

    def _require_release_image(self, region: str, image: str) -> None:
        """Only an image of the platform account tagged as a release is shared with every READY
        organisation: a mistyped id naming an internal image is refused before anything is
        recorded (found by an adversarial review, session 13)."""
        s = self.aws.settings
        ec2 = self.aws.platform("ec2", region)
        with aws_errors(f"ec2:DescribeImages {image} in {region}"):
            try:
                found = ec2.describe_images(ImageIds=[image], Owners=["self"])["Images"]
            except ClientError as e:
                if error_code(e) not in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"):
                    raise
                found = []
        tags = {t["Key"]: t.get("Value") for t in (found[0].get("Tags") or [])} if found else {}
        if tags.get(s.image_tag_key) != s.image_tag_value:
            raise ApplicationError(
                f"{image} in {region} is not a release image of the platform account (an image "
                f"it owns tagged {s.image_tag_key}={s.image_tag_value}); tag it, or name the "
                "right image",
                type="BadInput",
                non_retryable=True,
            )

    @activity.defn
    def release_orgs(self, req: ReleaseOrgsInput) -> ReleaseOrgs:
        """One page of organisations in id order: READY ones (sharing) or all (revoking)."""
        page = self.registry.orgs_page(req.after, req.limit, ("READY",) if req.ready_only else None)
        return ReleaseOrgs(
            orgs=[
                ReleaseOrg(org_id=str(o["org_id"]), regions=list(o.get("regions", [])))
                for o in page[: req.limit]
            ],
            more=len(page) > req.limit,
        )

    @activity.defn
    def record_release_image(self, req: ReleaseImageInput) -> None:
        """Remember a region's copy as part of the release (its successor revokes it)."""
        self.registry.record_release_image(req.version, req.region, req.image_id)

    @activity.defn
    def revoke_replaced_image(self, req: RevokeReplacedInput) -> RevokeReplacedResult:
        """Revoke the replaced release's image from the organisation in one region, unless one of
        its clusters there still uses it (KEPT, naming them) or it was never shared there
        (NOT_SHARED). Idempotent: an already revoked grant is NOT_SHARED the second time."""
        bind_subject(org_id=req.org_id, region=req.region)
        current = self.registry.image_share(req.org_id, req.region) or {}
        if current.get("image_id") == req.image_id and current.get("state") == "SHARED":
            # The new release never reached this org here: revoking would leave it no image.
            return RevokeReplacedResult(
                state=ReleaseStep.KEPT,
                reason="the new release is not shared here: the replaced image is still the current one",
            )
        recorded = self.registry.shared_image(req.org_id, req.region, req.image_id) or {}
        if recorded.get("state") != "SHARED":
            return RevokeReplacedResult(state=ReleaseStep.NOT_SHARED)
        used_by = self.registry.clusters_using(req.org_id, req.region, req.image_id)
        if used_by:
            log.info("replaced image kept: still used", image_id=req.image_id, clusters=used_by)
            return RevokeReplacedResult(
                state=ReleaseStep.KEPT,
                used_by=used_by,
                reason=f"still used by cluster(s) {', '.join(used_by)}",
            )
        self._grants.revoke_image(
            ShareImageInput(org_id=req.org_id, region=req.region, image_id=req.image_id)
        )
        return RevokeReplacedResult(state=ReleaseStep.REVOKED)

    @activity.defn
    def org_shared_images(self, req: OrgRegionsInput) -> SharedImages:
        """Every image still shared with the organisation: each recorded share not yet revoked,
        and the current image of each region (shared before shares were recorded)."""
        found = {
            (str(i["region"]), str(i["image_id"]))
            for i in self.registry.shared_images(req.org_id)
            if i.get("state") == "SHARED"
        }
        for region in self.registry.org(req.org_id).regions:
            current = self.registry.image_share(req.org_id, region) or {}
            if current.get("state") == "SHARED" and current.get("image_id"):
                found.add((region, str(current["image_id"])))
        return SharedImages(images=[ImageInRegion(region=r, image_id=i) for r, i in sorted(found)])
