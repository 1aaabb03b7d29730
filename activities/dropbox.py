"""The S3 drop-box: users without AWS rights create and delete clusters by dropping files into
``s3://<inbox>/home/<user>/<CLUSTER>.cf-create`` (a short JSON config) or ``.cf-delete``.

The inbox bucket lives in the platform account. Users map to an organisation and owner in the
registry (``DROPBOX#<user>``); unknown users are refused. Reading and parsing change nothing in AWS;
result files are written next to the request and the request is removed once handled.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError
from temporalio import activity

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
REQUEST_RE = re.compile(r"^home/(?P<user>[\w+=,.@-]{1,64})/(?P<cluster>[^/]+)\.cf-(?P<kind>create|delete)$")
MAX_REQUEST_BYTES = 64 * 1024


class DropboxActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    def _s3(self) -> Any:
        return self.aws.platform("s3", self.aws.settings.platform_region)

    @activity.defn
    def scan_inbox(self, req: DropboxWatchInput) -> DropboxScan:
        """List pending request files (``*.cf-create`` / ``*.cf-delete`` under ``home/<user>/``)."""
        bucket = req.bucket or self.aws.settings.inbox_bucket
        files: list[DropboxFile] = []
        with aws_errors(f"s3:ListBucket {bucket}", hint="Create the inbox with `python -m starter dropbox setup`."):
            for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="home/"):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith((".cf-create", ".cf-delete")):
                        # The version of a file is its ETag *and* its upload time: dropping the same
                        # content again later is a new request.
                        version = f"{obj['ETag'].strip(chr(34))}@{obj['LastModified'].isoformat()}"
                        files.append(DropboxFile(key=obj["Key"], etag=version))
        return DropboxScan(bucket=bucket, files=files[:500])

    @activity.defn
    def load_dropbox_request(self, req: DropboxRequestInput) -> DropboxParsed:
        """Read one request and check it: path, user mapping, name, JSON, known fields."""
        m = REQUEST_RE.match(req.key)
        if not m:
            parts = req.key.split("/")
            user = parts[1] if len(parts) > 2 else "unknown"
            cluster = parts[-1].rsplit(".cf-", 1)[0]
            kind = "delete" if req.key.endswith(".cf-delete") else "create"
            return DropboxParsed(kind=kind, user=user, cluster=cluster, error="request files go directly under home/<user>/")
        user, cluster, kind = m["user"], m["cluster"], m["kind"]
        out = DropboxParsed(kind=kind, user=user, cluster=cluster)
        mapping = self.registry.get(f"DROPBOX#{user}", "META")
        if not mapping:
            return out.model_copy(update={"error": f"user {user} is not registered for the drop-box; ask your administrator to add you"})
        out = out.model_copy(update={"org_id": mapping["org_id"], "owner": mapping.get("owner") or user})
        if not re.fullmatch(CLUSTER_NAME_RE, cluster):
            return out.model_copy(update={"error": f"cluster name {cluster!r} must match [A-Za-z][-A-Za-z0-9]{{0,59}}"})
        if kind == "delete":
            return out
        with aws_errors(f"s3:GetObject {req.key}"):
            try:
                obj = self._s3().get_object(Bucket=req.bucket, Key=req.key, IfMatch=req.etag.split("@")[0])
            except ClientError as e:
                if error_code(e) in ("NoSuchKey", "PreconditionFailed", "412"):
                    return out.model_copy(update={"error": "the request file changed or disappeared while being read; drop it again"})
                raise
            raw = obj["Body"].read(MAX_REQUEST_BYTES + 1)
        if len(raw) > MAX_REQUEST_BYTES:
            return out.model_copy(update={"error": f"the request is larger than {MAX_REQUEST_BYTES} bytes"})
        try:
            doc = json.loads(raw)
        except ValueError as e:
            return out.model_copy(update={"error": f"not valid JSON: {e}"})
        if not isinstance(doc, dict):
            return out.model_copy(update={"error": "the request must be a JSON object (the short cluster config)"})
        region = doc.pop("region", None)
        try:
            config = ClusterConfig.model_validate(doc)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or '(config)'}: {x['msg']}" for x in e.errors())
            return out.model_copy(update={"error": f"invalid cluster config: {problems}"})
        org = self.registry.org(mapping["org_id"])
        region = region or org.regions[0]
        if region not in org.regions:
            return out.model_copy(update={"error": f"region {region} is not one of {org.org_id}'s regions ({', '.join(org.regions)})"})
        return out.model_copy(update={"config": config, "region": region})

    @activity.defn
    def cluster_owner(self, req: DropboxParsed) -> str | None:
        """Owner and state of an existing cluster (consistent read), as ``owner:state``; None if unknown."""
        item = self.registry.get(f"ORG#{req.org_id}", f"CLUSTER#{req.cluster}")
        if not item:
            return None
        return f"{item.get('owner') or ''}:{item.get('state')}"

    @activity.defn
    def delete_dropbox_request(self, req: DropboxRequestInput) -> None:
        with aws_errors(f"s3:DeleteObject {req.key}"):
            self._s3().delete_object(Bucket=req.bucket, Key=req.key)

    @activity.defn
    def write_dropbox_result(self, req: DropboxResultInput) -> None:
        """Write ``<cluster>.<suffix>`` next to the request and remove the request (idempotent)."""
        prefix = f"home/{req.target.user}/"
        s3 = self._s3()
        with aws_errors(f"s3:PutObject {prefix}{req.cluster}.{req.suffix}"):
            s3.put_object(Bucket=req.target.bucket, Key=f"{prefix}{req.cluster}.{req.suffix}", Body=(req.body + "\n").encode(),
                          ContentType="text/plain")  # fmt: skip
            if req.request_key:
                s3.delete_object(Bucket=req.target.bucket, Key=req.request_key)
        log.info("drop-box result written", user=req.target.user, cluster=req.cluster, result=req.suffix)
