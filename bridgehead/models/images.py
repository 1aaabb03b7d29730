"""Platform machine images shared into customer accounts."""

from __future__ import annotations

from enum import StrEnum

from pydantic import (
    Field,
)

from bridgehead.models.common import Model, OrgId, Region


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


class ShareImageResult(Model):
    image_id: str
    snapshot_ids: list[str]
