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
    #: ``<ETag>@<LastModified>[@<S3 VersionId>]``: identifies one upload of the file (the version
    #: id where the inbox is versioned, as ``starter dropbox setup`` makes it).
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
    #: The version of the request that was handled (``DropboxFile.etag``): only that version is
    #: removed, so a newer upload to the same key is acted on by the next scan.
    request_version: str | None = None
