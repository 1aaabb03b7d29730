"""Platform machine images shared into customer accounts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    Field,
    StringConstraints,
)
from pydantic.json_schema import SkipJsonSchema

from bridgehead.models.common import Model, OrgId, Region

#: A release version: what the platform calls the image release (``2026.11.1``, ``v42``).
ReleaseVersion = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", strict=True)
]
#: An EC2 image id.
ImageId = Annotated[str, StringConstraints(pattern=r"^ami-[0-9a-f]{8,32}$", strict=True)]


class ImageShareState(StrEnum):
    PENDING = "PENDING"
    COPYING = "COPYING"
    SHARING = "SHARING"
    SHARED = "SHARED"
    REVOKED = "REVOKED"
    FAILED = "FAILED"


class ShareImagesInput(Model):
    """Input of ``ShareImages`` (workflow id ``org-{org_id}-images``).

    Attributes:
        org_id: The organisation whose account receives the images.
        regions: Regions to share in; default: the organisation's regions from the registry.
        revoke: Offboarding: remove every permission Bridgehead granted instead.
    """

    org_id: OrgId
    regions: list[Region] | None = None
    revoke: bool = False


class RegionShareStatus(Model):
    region: str
    state: ImageShareState = ImageShareState.PENDING
    image_id: str | None = None
    snapshot_ids: list[str] = Field(default_factory=list)
    copied_from: str | None = None
    reason: str = ""


class ShareImagesResult(Model):
    org_id: str
    regions: dict[str, RegionShareStatus]

    @property
    def all_shared(self) -> bool:
        return all(r.state == ImageShareState.SHARED for r in self.regions.values())


class OrgRegionsInput(Model):
    org_id: OrgId


class OrgRegions(Model):
    org_id: str
    aws_account_id: str
    regions: list[str]
    source_region: str


class FindImageInput(Model):
    region: str


class FindImageResult(Model):
    image_id: str | None
    name: str | None = None
    state: str | None = None


class CopyImageInput(Model):
    source_region: str
    source_image_id: str
    region: str
    client_token: str


class ImageInRegion(Model):
    region: str
    image_id: str


class ShareImageInput(Model):
    org_id: OrgId
    region: str
    image_id: str
    #: Set by ``ShareImages`` when its parent is the organisation's own workflow (computed from the
    #: parent's id, never from input): onboarding shares before the org is READY
    #: (bridgehead/org_access.py).
    by_org: bool = False


class ShareImageResult(Model):
    image_id: str
    snapshot_ids: list[str]


# --- image releases (``ImageRelease``) ---------------------------------------------------------
class ImageReleaseInput(Model):
    """Input of ``ImageRelease`` (workflow id ``image-release-{version}``).

    Attributes:
        version: The release's name; one workflow (and one registry record) per version.
        images: The released image id per region (at least the source region's); regions an
            organisation uses that are missing here get a copy of the source region's image.
        concurrency: How many (organisation, region) steps run at once; default: the
            ``image_release_concurrency`` setting.
        grace_period_hours: How long the replaced release stays shared before it is revoked;
            default: the ``image_release_grace_hours`` setting.
    """

    images: dict[Region, ImageId] = Field(min_length=1)
    version: ReleaseVersion
    concurrency: Annotated[int, Field(ge=1, le=16, strict=True)] | None = None
    grace_period_hours: Annotated[float, Field(ge=0, le=24 * 90)] | None = None


class ReleasePhase(StrEnum):
    SHARING = "SHARING"
    GRACE = "GRACE"
    REVOKING = "REVOKING"
    DONE = "DONE"


class ReleaseStep(StrEnum):
    """Progress of one (organisation, region) step."""

    PENDING = "PENDING"
    COPYING = "COPYING"
    SHARING = "SHARING"
    SHARED = "SHARED"
    REVOKING = "REVOKING"
    REVOKED = "REVOKED"
    #: Not revoked: a running cluster of the organisation still uses the replaced image.
    KEPT = "KEPT"
    #: Nothing to revoke: the replaced image was never shared there (or already revoked).
    NOT_SHARED = "NOT_SHARED"
    FAILED = "FAILED"


class ReleaseRegion(Model):
    state: ReleaseStep = ReleaseStep.PENDING
    image_id: str | None = None
    reason: str = ""


class ImageReleaseState(Model):
    """What one run of ``ImageRelease`` hands to the next (continue-as-new); bounded in size:
    per-pair progress is kept for the current page only, totals and (capped) problems for all."""

    phase: ReleasePhase = ReleasePhase.SHARING
    source_region: str
    images: dict[str, str]
    previous_version: str | None = None
    previous_images: dict[str, str] = Field(default_factory=dict)
    concurrency: int
    grace_seconds: int
    revoke_at: datetime | None = None
    #: The last organisation id of the last finished page of the current phase.
    cursor: str | None = None
    totals: dict[str, int] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)
    problems_omitted: int = 0
    runs: int = 1


class ImageReleaseRun(ImageReleaseInput):
    """What ``ImageRelease`` runs on: the public input plus the carried state, accepted only by a
    run continued from a previous run of the same workflow."""

    carried: SkipJsonSchema[ImageReleaseState | None] = None


class ImageReleaseStatus(Model):
    """The ``status`` query: the phase, per-region release images, per organisation and region
    progress of the page in flight, and totals (by step) and problems over the whole release."""

    version: str
    phase: ReleasePhase
    images: dict[str, str]
    previous_version: str | None
    previous_images: dict[str, str]
    revoke_at: datetime | None
    orgs: dict[str, dict[str, ReleaseRegion]]
    totals: dict[str, int]
    problems: list[str]
    problems_omitted: int


class BeginReleaseInput(Model):
    version: str
    images: dict[str, str]


class ReleasePlan(Model):
    """Recorded release, the one it replaces (None for the first), and the settings snapshot."""

    source_region: str
    previous_version: str | None
    previous_images: dict[str, str]
    concurrency: int
    grace_seconds: int


class ReleaseOrgsInput(Model):
    after: str | None
    limit: int
    ready_only: bool


class ReleaseOrg(Model):
    org_id: str
    regions: list[str]


class ReleaseOrgs(Model):
    orgs: list[ReleaseOrg]
    more: bool


class ReleaseImageInput(Model):
    version: str
    region: str
    image_id: str


class RevokeReplacedInput(Model):
    org_id: OrgId
    region: str
    image_id: str


class RevokeReplacedResult(Model):
    state: ReleaseStep
    used_by: list[str] = Field(default_factory=list)
    reason: str = ""


class SharedImages(Model):
    """Every image still shared with an organisation, per region (offboarding revokes them)."""

    images: list[ImageInRegion]
