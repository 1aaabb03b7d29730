"""The self-service drop-box (request files in S3)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from bridgehead.models.clusters import ClusterConfig, DropboxTarget
from bridgehead.models.common import Model


class DropboxWatchInput(Model):
    """Input of ``DropboxWatch`` (started by the Schedule ``dropbox-watch``)."""

    bucket: str | None = None  # default: BRIDGEHEAD_INBOX_BUCKET


class DropboxFile(Model):
    key: str
    #: ``<ETag>@<LastModified>``: identifies one upload of the file.
    etag: str


class DropboxScan(Model):
    bucket: str
    files: list[DropboxFile] = Field(default_factory=list)


class DropboxRequestInput(Model):
    """Input of ``DropboxRequest`` (workflow id ``dropbox-{digest of key and etag}``): one file."""

    bucket: str
    key: str
    etag: str


class DropboxParsed(Model):
    """A request file read and checked against the user mapping (no AWS change made)."""

    kind: Literal["create", "delete"]
    user: str
    cluster: str
    org_id: str | None = None
    owner: str | None = None
    region: str | None = None
    config: ClusterConfig | None = None
    error: str | None = None


class DropboxResultInput(Model):
    target: DropboxTarget
    cluster: str
    suffix: Literal["cf-created", "cf-failed", "cf-deleted", "cf-rejected"]
    body: str
    #: The request file to remove once the result is written.
    request_key: str | None = None
