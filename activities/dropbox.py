"""The S3 drop-box: users without AWS rights create and delete clusters by dropping files into
``s3://<inbox>/home/<user>/<CLUSTER>.cf-create`` (a short JSON config) or ``.cf-delete``.

The inbox bucket lives in the platform account. Users map to an organisation and owner in the
registry (:meth:`activities.registry.Registry.dropbox_user`); unknown users are refused. Result files are written next to the
request and the request is removed once handled.

* **One version at a time.** The inbox is versioned (``starter dropbox setup``): a request is
  identified by its key *and* the version the scan listed, read by that version, and removed by
  that version only. A new upload to the same key while the first is handled is left in place, so
  the next scan acts on it (never lost). In an unversioned bucket the removal is conditional on the
  ETag and upload time that were read.
* **Results answer the newest request.** Reading a request removes that cluster's result files
  (``.cf-created``/``.cf-failed``/``.cf-deleted``/``.cf-rejected``) older than the request, so a
  new request never looks finished because of an old result.
* **Resource names from settings, never input.** Every bucket an input names must be the configured
  inbox (or be absent); anything else is refused before S3 is touched.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import aws_errors, error_code
from activities.registry import Registry
from bridgehead.logging import get_logger
from bridgehead.models import (
    CLUSTER_NAME_RE,
    ClusterConfig,
    DropboxFile,
    DropboxParsed,
    DropboxRequestInput,
    DropboxResultInput,
    DropboxScan,
    DropboxWatchInput,
)

log = get_logger("bridgehead.activities.dropbox")
REQUEST_RE = re.compile(
    r"^home/(?P<user>[\w+=,.@-]{1,64})/(?P<cluster>[^/]+)\.cf-(?P<kind>create|delete)$"
)
MAX_REQUEST_BYTES = 64 * 1024
RESULT_SUFFIXES = ("cf-created", "cf-failed", "cf-deleted", "cf-rejected")
REQUEST_SUFFIXES = (".cf-create", ".cf-delete")


class UntrustedResourceName(Exception):
    """Type name of the refusal of a resource name taken from input instead of settings."""


def version_string(etag: str, last_modified: datetime, version_id: str | None) -> str:
    """What identifies one upload of a request file: ``<ETag>@<LastModified>[@<VersionId>]``."""
    base = f"{etag.strip(chr(34))}@{last_modified.isoformat()}"
    return f"{base}@{version_id}" if version_id and version_id != "null" else base


def parse_version(version: str) -> tuple[str, datetime | None, str | None]:
    """(ETag, upload time, S3 version id) of :func:`version_string`; older forms lack the last two."""
    parts = version.split("@")
    uploaded = None
    if len(parts) > 1:
        try:
            uploaded = datetime.fromisoformat(parts[1])
        except ValueError:
            uploaded = None
    return parts[0], uploaded, (parts[2] if len(parts) > 2 and parts[2] else None)


def is_request_key(key: str) -> bool:
    """Whether ``key`` is a request file to hand to ``DropboxRequest`` (which checks the rest of
    the path itself, rejecting misplaced files with a reason)."""
    return key.startswith("home/") and key.endswith(REQUEST_SUFFIXES)


def pending_requests(s3: Any, bucket: str, prefix: str, limit: int = 500) -> list[DropboxFile]:
    """The current version of each request file under ``prefix`` (older versions are being handled
    or were handled). One function for the scan and the event consumer
    (:mod:`activities.dropbox_events`), so both derive the same ``DropboxRequest`` id from a file."""
    files: list[DropboxFile] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Versions", []):
            if obj["IsLatest"] and is_request_key(obj["Key"]):
                # The version of a file is its ETag, upload time and S3 version: dropping the same
                # content again later is a new request.
                version = version_string(obj["ETag"], obj["LastModified"], obj.get("VersionId"))
                files.append(DropboxFile(key=obj["Key"], etag=version))
                if len(files) >= limit:
                    return files
    return files


def superseded_versions(s3: Any, bucket: str, key: str, version_id: str) -> list[str]:
    """Versions of ``key`` older than ``version_id`` (S3 lists a key's versions newest first)."""
    ordered: list[str] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        ordered += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]
    return ordered[ordered.index(version_id) + 1 :] if version_id in ordered else []


class DropboxActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    def _s3(self) -> Any:
        return self.aws.platform("s3", self.aws.settings.platform_region)

    def _inbox(self, named: str | None, field: str) -> str:
        """The configured inbox; an input may only repeat it (or leave it out), never redirect it."""
        inbox = self.aws.settings.inbox_bucket
        if named is not None and named != inbox:
            raise ApplicationError(
                f"{field} {named!r} is not the drop-box inbox: buckets come from settings "
                f"(BRIDGEHEAD_INBOX_BUCKET={inbox!r}), never from input; leave {field} out",
                type=UntrustedResourceName.__name__,
                non_retryable=True,
            )
        return inbox

    @activity.defn
    def scan_inbox(self, req: DropboxWatchInput) -> DropboxScan:
        """List pending request files (``*.cf-create`` / ``*.cf-delete`` under ``home/<user>/``),
        the current version of each (older versions are being handled or were handled)."""
        bucket = self._inbox(req.bucket, "DropboxWatchInput.bucket")
        with aws_errors(
            f"s3:ListBucket {bucket}",
            hint="Create the inbox with `python -m starter dropbox setup`.",
        ):
            files = pending_requests(self._s3(), bucket, "home/", limit=500)
        return DropboxScan(bucket=bucket, files=files)

    def _remove_request(self, bucket: str, key: str, version: str) -> bool:
        """Remove the version of the request that was handled and the older uploads it
        superseded; a newer upload stays for the next scan. (Removing the handled version alone
        would make an older, never-handled upload current again: a stale request acted on by
        the next scan, with no S3 event to announce it.) Returns whether something was removed."""
        etag, uploaded, version_id = parse_version(version)
        s3 = self._s3()
        if version_id:
            for older in superseded_versions(s3, bucket, key, version_id):
                s3.delete_object(Bucket=bucket, Key=key, VersionId=older)
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
            return True
        # Unversioned bucket: delete only if the object is still the upload that was read.
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        if head["ETag"].strip('"') != etag or (
            uploaded is not None and head["LastModified"] != uploaded
        ):
            log.info("drop-box request replaced while handled; kept for the next scan", key=key)
            return False
        try:
            s3.delete_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])
        except ClientError as e:
            if error_code(e) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                return False
            raise
        return True

    def _clear_older_results(self, bucket: str, user: str, cluster: str, version: str) -> list[str]:
        """Remove this cluster's result files that answer older requests (a new request version
        clears the answers to older ones): those tagged with an older request version, and untagged
        ones (written by the cluster) from before this request was uploaded."""
        _, uploaded, _ = parse_version(version)
        if uploaded is None:
            return []
        s3 = self._s3()
        removed = []
        for suffix in RESULT_SUFFIXES:
            key = f"home/{user}/{cluster}.{suffix}"
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
            except ClientError as e:
                if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                    continue
                raise
            answered = head.get("Metadata", {}).get("request-version")
            if answered:  # written by a DropboxRequest: older if it answers an older upload
                _, answered_at, _ = parse_version(answered)
                stale = answered != version and answered_at is not None and answered_at <= uploaded
            else:  # written by the cluster (no version): older if written before this upload
                stale = head["LastModified"] <= uploaded
            if stale:
                try:
                    s3.delete_object(
                        Bucket=bucket, Key=key, IfMatch=head["ETag"]
                    )  # not a result written since
                    removed.append(suffix)
                except ClientError as e:
                    if error_code(e) not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                        raise
        if removed:
            log.info("older drop-box results cleared", user=user, cluster=cluster, results=removed)
        return removed

    @activity.defn
    def load_dropbox_request(self, req: DropboxRequestInput) -> DropboxParsed:
        """Read one request (the version listed, not whatever the key holds now) and check it: path,
        user mapping, name, JSON, known fields. Results of this cluster older than the request are
        removed first; nothing else changes in AWS."""
        bucket = self._inbox(req.bucket, "DropboxRequestInput.bucket")
        etag, uploaded, version_id = parse_version(req.etag)
        m = REQUEST_RE.match(req.key)
        if not m:
            parts = req.key.split("/")
            user = parts[1] if len(parts) > 2 else "unknown"
            cluster = parts[-1].rsplit(".cf-", 1)[0]
            return DropboxParsed(
                kind="delete" if req.key.endswith(".cf-delete") else "create",
                user=user,
                cluster=cluster,
                error="request files go directly under home/<user>/",
            )
        user, cluster, kind = m["user"], m["cluster"], m["kind"]
        out = DropboxParsed(
            kind="delete" if kind == "delete" else "create", user=user, cluster=cluster
        )
        with aws_errors(f"s3:DeleteObject home/{user}/{cluster}.cf-*"):
            self._clear_older_results(bucket, user, cluster, req.etag)
        mapping = self.registry.dropbox_user(user)
        if not mapping:
            return out.model_copy(
                update={
                    "error": f"user {user} is not registered for the drop-box; ask your administrator to add you"
                }
            )
        out = out.model_copy(
            update={"org_id": mapping["org_id"], "owner": mapping.get("owner") or user}
        )
        if not re.fullmatch(CLUSTER_NAME_RE, cluster):
            return out.model_copy(
                update={
                    "error": f"cluster name {cluster!r} must match [A-Za-z][-A-Za-z0-9]{{0,59}}"
                }
            )
        if kind == "delete":
            return out
        with aws_errors(f"s3:GetObject {req.key}"):
            try:
                exact = {"VersionId": version_id} if version_id else {"IfMatch": etag}
                obj = self._s3().get_object(Bucket=bucket, Key=req.key, **exact)
            except ClientError as e:
                if error_code(e) in ("NoSuchKey", "NoSuchVersion", "PreconditionFailed", "412"):
                    return out.model_copy(
                        update={
                            "error": "the request file changed or disappeared while being read; drop it again"
                        }
                    )
                raise
            raw = obj["Body"].read(MAX_REQUEST_BYTES + 1)
        if len(raw) > MAX_REQUEST_BYTES:
            return out.model_copy(
                update={"error": f"the request is larger than {MAX_REQUEST_BYTES} bytes"}
            )
        try:
            doc = json.loads(raw)
        except ValueError as e:
            return out.model_copy(update={"error": f"not valid JSON: {e}"})
        if not isinstance(doc, dict):
            return out.model_copy(
                update={"error": "the request must be a JSON object (the short cluster config)"}
            )
        region = doc.pop("region", None)
        try:
            config = ClusterConfig.model_validate(doc)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, x['loc'])) or '(config)'}: {x['msg']}" for x in e.errors()
            )
            return out.model_copy(update={"error": f"invalid cluster config: {problems}"})
        org = self.registry.org(mapping["org_id"])
        region = region or org.regions[0]
        if region not in org.regions:
            return out.model_copy(
                update={
                    "error": f"region {region} is not one of {org.org_id}'s regions ({', '.join(org.regions)})"
                }
            )
        return out.model_copy(update={"config": config, "region": region})

    @activity.defn
    def cluster_owner(self, req: DropboxParsed) -> str | None:
        """Owner and state of an existing cluster (consistent read), as ``owner:state``; None if unknown."""
        assert req.org_id is not None  # only asked about parsed requests of a known user
        item = self.registry.cluster(req.org_id, req.cluster)
        if not item:
            return None
        return f"{item.get('owner') or ''}:{item.get('state')}"

    @activity.defn
    def delete_dropbox_request(self, req: DropboxRequestInput) -> None:
        """Remove the handled version of the request (a newer upload stays, for the next scan)."""
        bucket = self._inbox(req.bucket, "DropboxRequestInput.bucket")
        with aws_errors(f"s3:DeleteObject {req.key}"):
            self._remove_request(bucket, req.key, req.etag)

    @activity.defn
    def write_dropbox_result(self, req: DropboxResultInput) -> None:
        """Write ``<cluster>.<suffix>`` next to the request and remove the handled version of the
        request (idempotent; a newer upload of the request stays, for the next scan)."""
        bucket = self._inbox(req.target.bucket, "DropboxTarget.bucket")
        prefix = f"home/{req.target.user}/"
        s3 = self._s3()
        with aws_errors(f"s3:PutObject {prefix}{req.cluster}.{req.suffix}"):
            # A result of a request carries the request version it answers (see _clear_older_results).
            meta = {"request-version": req.request_version} if req.request_version else {}
            s3.put_object(
                Bucket=bucket,
                Key=f"{prefix}{req.cluster}.{req.suffix}",
                Body=(req.body + "\n").encode(),
                ContentType="text/plain",
                Metadata=meta,
            )
            if req.request_key:
                if req.request_version:
                    self._remove_request(bucket, req.request_key, req.request_version)
                else:  # a result of a workflow started before versions were passed (old histories)
                    s3.delete_object(Bucket=bucket, Key=req.request_key)
        log.info(
            "drop-box result written", user=req.target.user, cluster=req.cluster, result=req.suffix
        )
