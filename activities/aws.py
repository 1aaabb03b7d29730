"""boto3 plumbing shared by activities: platform clients, the registry, and customer sessions.

Customer sessions are created *inside* activities by assuming the organisation's own role with its
own External ID, both looked up by ``org_id`` in the registry (never taken from the caller).
Credentials are cached in worker memory until shortly before they expire; they never enter a
workflow payload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
from temporalio.exceptions import ApplicationError

from activities.errors import AwsValidationError, CustomerActionRequired, aws_errors
from bridgehead import ids
from bridgehead.settings import Settings

# Per-call retries stay small: Temporal owns the retry loop (and records it), botocore only smooths
# over blips within one attempt.
BOTO_CONFIG = botocore.config.Config(
    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30
)


@dataclass
class OrgRecord:
    org_id: str
    aws_account_id: str
    external_id: str
    role_arn: str | None
    admin_email: str
    display_name: str
    regions: list[str]
    state: str
    marketplace_customer_id: str | None = None


class Aws:
    """Thread-safe factory for platform and customer boto3 clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._creds: dict[tuple[str, str], tuple[dict[str, str], float]] = {}
        self._platform_session = boto3.session.Session()
        self._platform_account: str | None = None
        # Clients are shared by every activity thread: two pooled connections per thread (a stack
        # look makes two calls at once, activities/cloudformation.py), so a busy worker neither
        # waits for nor discards connections (botocore's default pool is 10).
        self._config = BOTO_CONFIG.merge(
            botocore.config.Config(
                max_pool_connections=max(10, 2 * settings.max_concurrent_activities)
            )
        )

    # --- platform account -------------------------------------------------------------------
    def platform(self, service: str, region: str | None = None) -> Any:
        region = region or self.settings.platform_region
        key = ("platform", service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._platform_session.client(
                    service, region_name=region, config=self._config
                )
                self._clients[key] = client
        if service == "s3" and not getattr(client, "_bridgehead_inbox_owner", False):
            self._expect_inbox_owner(client)
        return client

    def _expect_inbox_owner(self, s3: Any) -> None:
        """Every call on the drop-box inbox says whose bucket it must be (``ExpectedBucketOwner``:
        the platform account). The inbox is named by settings in S3's global namespace; were the
        bucket ever missing and created by someone else, S3 refuses the calls (403) instead of
        reading their requests and writing our results into their bucket (session 13)."""
        owner, inbox = self.platform_account(), self.settings.inbox_bucket

        def expect(params: dict[str, Any], model: Any, **_: Any) -> None:
            shape = model.input_shape
            if params.get("Bucket") == inbox and shape and "ExpectedBucketOwner" in shape.members:
                params.setdefault("ExpectedBucketOwner", owner)

        s3.meta.events.register("before-parameter-build.s3.*", expect, unique_id="inbox-owner")
        s3._bridgehead_inbox_owner = True

    def platform_account(self) -> str:
        if self._platform_account is None:
            with aws_errors("sts:GetCallerIdentity (platform)"):
                self._platform_account = self.platform("sts").get_caller_identity()["Account"]
        return self._platform_account

    def platform_principal(self) -> str:
        """The principal customers trust: ``BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN``, else the role the
        worker runs as (its assumed-role identity mapped to the role's ARN), else what the
        worker's credentials are (production refuses an account root at start)."""
        if self.settings.platform_principal_arn:
            return self.settings.platform_principal_arn
        with aws_errors("sts:GetCallerIdentity (platform)"):
            arn = str(self.platform("sts").get_caller_identity()["Arn"])
        return principal_of(arn)

    # --- customer accounts ------------------------------------------------------------------
    def assume(self, role_arn: str, external_id: str | None, session_name: str) -> dict[str, str]:
        """AssumeRole from the platform; returns credentials for use inside this activity only."""
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name[:64],
            "DurationSeconds": 3600,
        }
        if external_id is not None:
            kwargs["ExternalId"] = external_id
        resp = self.platform("sts").assume_role(**kwargs)
        c = resp["Credentials"]
        return {
            "aws_access_key_id": c["AccessKeyId"],
            "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"],
        }

    def customer(self, org: OrgRecord, service: str, region: str) -> Any:
        """A client acting in the org's account through the org's role and External ID."""
        if not org.role_arn:
            raise ApplicationError(
                f"organisation {org.org_id} has no verified role yet; finish onboarding first",
                type=CustomerActionRequired.__name__,
                non_retryable=True,
            )
        cache_key = (org.org_id, org.role_arn)
        now = time.time()
        with self._lock:
            cached = self._creds.get(cache_key)
        if cached is None or cached[1] < now + 300:
            with aws_errors(
                f"sts:AssumeRole into {org.role_arn}",
                hint=f"Check that the role exists and trusts {self.platform_principal()} with External ID {org.external_id}.",
            ):
                creds = self.assume(org.role_arn, org.external_id, ids.session_name(org.org_id))
            cached = (creds, now + 3000)
            with self._lock:
                self._creds[cache_key] = cached
                # Drop clients built on older credentials for this org.
                for k in [k for k in self._clients if k[0].startswith(f"org:{org.org_id}:")]:
                    del self._clients[k]
        creds, expiry = cached
        key = (f"org:{org.org_id}:{int(expiry)}", service, region)
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            client = self.client_with(creds, service, region)
            with self._lock:
                client = self._clients.setdefault(key, client)
        return client

    def client_with(
        self, creds: Mapping[str, str | None], service: str, region: str, config: Any = None
    ) -> Any:
        """A client acting with ``creds``, built from the worker's one shared session.

        A new ``boto3.Session`` per set of credentials would load botocore's endpoint data and the
        service's model from disk again (about 40 % of the worker's CPU when a new organisation's
        clients were built: docs/benchmarks.md); the shared session loads each once per process.
        Sessions are not thread-safe, so clients are built under the lock; the clients themselves
        are."""
        with self._lock:
            return self._platform_session.client(
                service, region_name=region, config=config or self._config, **creds
            )

    def session_for(self, creds: dict[str, str]) -> CredentialedSession:
        """``boto3.Session``-like: ``.client(service, region_name=..., config=...)`` with ``creds``."""
        return CredentialedSession(self, creds)

    def forget(self, org_id: str) -> None:
        """Drop cached credentials of an org (after its role changed)."""
        with self._lock:
            for k in [k for k in self._creds if k[0] == org_id]:
                del self._creds[k]

    def with_keys(
        self,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None,
        service: str,
        region: str,
    ) -> Any:
        """A one-off client from customer-supplied keys (create-role-for-me); never cached."""
        keys = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "aws_session_token": session_token,
        }
        return self.client_with(keys, service, region, BOTO_CONFIG)


class CredentialedSession:
    """What a check needs of a ``boto3.Session`` holding assumed credentials (``client()``), built
    on :meth:`Aws.client_with`; the credentials stay in this object, inside the activity."""

    def __init__(self, aws: Aws, creds: dict[str, str]) -> None:
        self._aws, self._creds = aws, creds

    def client(self, service: str, region_name: str | None = None, config: Any = None) -> Any:
        region = region_name or self._aws.settings.platform_region
        return self._aws.client_with(self._creds, service, region, config)


def not_found(what: str) -> ApplicationError:
    return ApplicationError(what, type=AwsValidationError.__name__, non_retryable=True)


def principal_of(caller_arn: str) -> str:
    """The IAM principal behind a caller identity: ``arn:aws:sts::A:assumed-role/R/session`` is
    role ``arn:aws:iam::A:role/R``; users and roots stay as they are."""
    parts = caller_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return caller_arn
