"""Bridgehead settings (pydantic-settings, prefix ``BRIDGEHEAD_``).

Temporal connection settings are *not* here: they come from ``temporalio.envconfig``
(``temporal.toml`` profiles and the standard ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*`` variables), the same way the official samples connect.
AWS credentials and endpoints come from the boto3 chain (profiles, ``AWS_*`` variables,
``AWS_ENDPOINT_URL``). Only workers, the starter and activities call :func:`get_settings`;
workflow code never does (it receives configuration through its input or an activity).
"""

from __future__ import annotations

import base64
import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridgehead.models import DEFAULT_REGIONS, SUPPORTED_REGIONS

#: Rates in USD per node-hour, version ``2026-11``. Override with ``BRIDGEHEAD_RATES``
#: (JSON object) and bump ``BRIDGEHEAD_RATE_VERSION`` whenever prices change.
DEFAULT_RATES: dict[str, Decimal] = {
    "t3.micro": Decimal("0.0104"),
    "t3.medium": Decimal("0.0416"),
    "t3.large": Decimal("0.0832"),
    "m5.large": Decimal("0.096"),
    "m5.xlarge": Decimal("0.192"),
    "m5.2xlarge": Decimal("0.384"),
    "c5.large": Decimal("0.085"),
    "c5.xlarge": Decimal("0.17"),
    "c5.2xlarge": Decimal("0.34"),
    "c5.4xlarge": Decimal("0.68"),
    "r5.xlarge": Decimal("0.252"),
    "r5.2xlarge": Decimal("0.504"),
}

#: vCPUs per instance type, for the EC2 quota pre-check.
DEFAULT_VCPUS: dict[str, int] = {
    "t3.micro": 2,
    "t3.medium": 2,
    "t3.large": 2,
    "m5.large": 2,
    "m5.xlarge": 4,
    "m5.2xlarge": 8,
    "c5.large": 2,
    "c5.xlarge": 4,
    "c5.2xlarge": 8,
    "c5.4xlarge": 16,
    "r5.xlarge": 4,
    "r5.2xlarge": 8,
}

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Bridgehead's own configuration. Every field can be set as ``BRIDGEHEAD_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="BRIDGEHEAD_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    #: ``local``: the embedded stack (a codec key is generated under ``state_dir`` when none is
    #: given). ``test`` and ``production``: ``BRIDGEHEAD_CODEC_KEY`` is required. The default is
    #: ``production``, so a deployment that forgot a setting fails at start instead of inventing a
    #: key of its own (the embedded stack and the tests say ``local`` / ``test`` explicitly).
    environment: Literal["local", "test", "production"] = "production"
    task_queue: str = "bridgehead"
    #: Folder for the embedded stack (SQLite file, logs, generated codec key).
    state_dir: Path = REPO_ROOT / ".state"

    # --- platform account -------------------------------------------------------------------
    #: Principal the customer's trust policy names: a dedicated platform role
    #: (``arn:aws:iam::<platform account>:role/bridgehead-platform``) whose credentials the worker
    #: runs with. Required in production, where an account root (``:root`` or a bare account id,
    #: i.e. every principal of the platform account) is refused. Locally (embedded stack) the
    #: default is the root of the worker's account, looked up with ``sts:GetCallerIdentity``.
    platform_principal_arn: str | None = None
    registry_table: str = "bridgehead-registry"
    ledger_table: str = "bridgehead-ledger"
    #: Create the registry and ledger tables at worker start if missing (local/dev convenience;
    #: in production provision them with ``policies/platform-tables.template.yaml``).
    create_tables: bool = True
    #: Region of the platform's own resources (registry, ledger, inbox bucket).
    platform_region: str = "us-east-1"
    #: Where released images live; images are copied from here to regions that lack them.
    image_source_region: str = "us-east-1"
    #: Tag key/value marking a released platform image.
    image_tag_key: str = "bridgehead:release"
    image_tag_value: str = "current"
    #: ``ImageRelease``: how many (organisation, region) shares or revocations run at once.
    image_release_concurrency: int = Field(default=4, ge=1, le=16)
    #: ``ImageRelease``: how long the replaced release stays shared before it is revoked (hours).
    image_release_grace_hours: float = Field(default=72.0, ge=0)
    supported_regions: list[str] = Field(default_factory=lambda: list(SUPPORTED_REGIONS))
    default_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS))

    # --- customer role --------------------------------------------------------------------------
    customer_role_name: str = "BridgeheadAccess"
    #: Whether ``sts:AssumeRole`` is known to enforce trust policies (true on real AWS, false on
    #: moto). When false, the confused-deputy probe is reported as not proved by the probe.
    sts_enforces_trust: bool = True

    # --- clusters and billing ---------------------------------------------------------------------
    rate_version: str = "2026-11"
    rates: dict[str, Decimal] = Field(default_factory=lambda: dict(DEFAULT_RATES))
    vcpus: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_VCPUS))
    max_compute_nodes: int = 64
    #: How long the head node has to signal readiness (``cfn-signal`` in its user data) before its
    #: ``CreationPolicy`` fails the stack: the cluster template's ``ResourceSignal`` timeout.
    head_bootstrap_minutes: int = Field(default=20, ge=5, le=120)
    min_head_volume_gb: int = 20
    max_head_volume_gb: int = 16384
    #: Shortest ``auto_stop_idle_minutes`` accepted: watching costs at most 240 / N Temporal
    #: actions per cluster-hour (bridgehead/guardrails.py), 16 at 15. Tests lower it to 1.
    min_auto_stop_idle_minutes: int = 15
    marketplace_product_code: str = "bridgehead-local"
    #: SQS queue (platform account) subscribed to the product's AWS Marketplace subscription SNS
    #: topic; the worker consumes it and signals ``MarketplaceSubscription``. Empty: no consumer.
    marketplace_notification_queue: str = "bridgehead-marketplace-notifications"
    #: SQS queue (platform account) fed by the regional stack-event topics; the worker consumes it
    #: and signals ``stack_event`` to waiting workflows (activities/stack_events.py). Empty: none.
    stack_events_queue: str = "bridgehead-stack-events"
    #: SNS topic (platform account, one per region, this name) that every stack notifies
    #: (``NotificationARNs``). Empty: stacks notify nobody and the waits' safety net alone sees
    #: them. Empty on the embedded stack: moto cannot notify a topic of another account.
    stack_events_topic: str = ""
    notify_sender: str = "noreply@bridgehead.example.com"
    #: Platform-account bucket of the self-service drop-box (``home/<user>/<CLUSTER>.cf-create``).
    inbox_bucket: str = "bridgehead-inbox"
    #: How often the Schedule ``dropbox-watch`` looks for new request files while the inbox sends
    #: no events (``dropbox_events_queue`` empty, or not set up on the bucket).
    dropbox_every_seconds: int = Field(default=30, ge=1)
    #: SQS queue (platform account and region: S3 notifies only a queue of the bucket's region)
    #: fed by the inbox's S3 event notifications, set up by ``starter dropbox setup``; the worker
    #: consumes it and starts ``DropboxRequest`` at once (activities/dropbox_events.py). Empty:
    #: no events, the Schedule alone finds requests, every ``dropbox_every_seconds``.
    dropbox_events_queue: str = "bridgehead-dropbox-events"
    #: How often ``dropbox-watch`` looks when the events are set up: a safety net for an event
    #: that never arrived. Each look costs 3 Temporal actions: 0.5 an hour at 6 hours, which keeps
    #: a platform with a single one-cluster organisation at 3.93 actions per cluster-hour (≤ 4;
    #: 21.43 at 10 minutes). Events are not lost while the worker is down (the queue keeps them
    #: for its retention period) and the worker checks the inbox's notification rules at start, so
    #: the safety net covers only an event S3 never sent. Lower it where a lost request must be
    #: seen sooner than 6 hours.
    dropbox_safety_net_seconds: int = Field(default=21600, ge=1)

    # --- payload encryption -----------------------------------------------------------------------
    #: 32-byte AES key, base64. Encrypts sensitive payloads (customer access keys). Locally a key
    #: is generated once under ``state_dir``; outside ``local``/``test`` it is required.
    codec_key: SecretStr | None = None
    #: Older keys (JSON list of base64 keys) that still decrypt but never encrypt: key rotation
    #: (README, "Rotating the payload key").
    codec_old_keys: list[SecretStr] = Field(default_factory=list)
    #: Decrypt v1 payloads too (bound to the key only, written before payloads were bound to their
    #: workflow and handler). Off by default: such a ciphertext, copied from one workflow's
    #: history, would decrypt in any other. Set it only while runs started before that upgrade
    #: still run (README, "Rotating the payload key").
    codec_accept_v1: bool = False

    # --- worker tuning ------------------------------------------------------------------------------
    max_concurrent_activities: int = 32
    #: Local activities (registry reads and writes, template rendering) run inside workflow tasks
    #: on the same thread pool as activities; the pool has a thread for each slot of both
    #: (``worker.activity_threads``), so activities waiting on AWS never hold up a workflow task.
    max_concurrent_local_activities: int = Field(default=32, ge=1)
    max_concurrent_workflow_tasks: int = 64
    max_cached_workflows: int = 2000
    #: ``isolated``: every workflow run re-imports the ``workflows`` package inside Temporal's
    #: sandbox, which catches a non-deterministic call at run time (about 400 KiB of memory per
    #: cached run). ``shared``: the package is imported once and shared by every run (about
    #: 130 KiB per cached run, measured by ``python -m bench.memory``); determinism is then kept by
    #: the static check of tests/test_workflow_determinism.py and the replay suite, which run the
    #: isolated sandbox. For a worker holding thousands of waiting clusters.
    workflow_sandbox: Literal["isolated", "shared"] = "isolated"
    #: Young-generation threshold of the worker process's garbage collector; 0 keeps CPython's
    #: (700). 10,000 cut collection per lifecycle from 5-6 to about 1 ms in the throughput
    #: benchmark but held evicted runs' garbage longer: 1,000 waiting clusters on a cache of 500
    #: took the worker from 407 to 660 MiB (2,000: 427 MiB). For a worker with memory to spare
    #: that starts many short runs. See ``worker.tune_gc`` and docs/benchmarks.md (session 8).
    gc_young_threshold: int = Field(default=0, ge=0)
    #: Prometheus endpoint of the worker (SDK metrics and Bridgehead's own, see bridgehead/metrics.py).
    metrics_port: int | None = None
    #: Address the metrics endpoint binds; loopback by default (``0.0.0.0`` to let a Prometheus
    #: on another host scrape it).
    metrics_address: str = "127.0.0.1"
    #: How often the worker refreshes the ``bridgehead_clusters`` gauge from Temporal visibility.
    metrics_refresh_seconds: int = 30
    #: OpenTelemetry tracing through the SDK's interceptor (needs the ``otel`` extra; off by default).
    tracing: bool = False

    @field_validator("supported_regions", "default_regions")
    @classmethod
    def _regions_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one region")
        return v

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.environment != "local" and self.codec_key is None:
            raise ValueError(
                f"BRIDGEHEAD_CODEC_KEY is required (BRIDGEHEAD_ENVIRONMENT={self.environment}; only "
                "'local', the embedded stack, generates one): 32 random bytes, base64; "
                "generate one with: python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'"
            )
        missing = [r for r in self.default_regions if r not in self.supported_regions]
        if missing:
            raise ValueError(f"default_regions {missing} are not in supported_regions")
        return self

    def codec_old_key_bytes(self) -> list[bytes]:
        """The decrypt-only keys of the key ring."""
        keys = [base64.b64decode(k.get_secret_value()) for k in self.codec_old_keys]
        if any(len(k) != 32 for k in keys):
            raise ValueError(
                "every BRIDGEHEAD_CODEC_OLD_KEYS entry must decode to exactly 32 bytes"
            )
        return keys

    @model_validator(mode="after")
    def _production_trusts_a_dedicated_role(self) -> Settings:
        if self.environment != "production":
            return self
        problem = platform_principal_problem(self.platform_principal_arn)
        if problem:
            raise ValueError(
                f"BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN {problem}: in production customers must trust a dedicated platform "
                "role (e.g. arn:aws:iam::<platform account>:role/bridgehead-platform, the role the worker runs as), "
                "never an account root, which would let every principal of the platform account act in their accounts"
            )
        return self

    def codec_key_bytes(self) -> bytes:
        """Return the payload-encryption key, creating a local one on first use outside production."""
        if self.codec_key is not None:
            key = base64.b64decode(self.codec_key.get_secret_value())
        else:
            path = self.state_dir / "codec.key"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(base64.b64encode(os.urandom(32)).decode())
            key = base64.b64decode(path.read_text().strip())
        if len(key) != 32:
            raise ValueError("BRIDGEHEAD_CODEC_KEY must decode to exactly 32 bytes")
        return key


def platform_principal_problem(arn: str | None) -> str | None:
    """Why ``arn`` cannot be the principal customers trust in production, or ``None``."""
    import re

    if not arn:
        return "is not set"
    if re.fullmatch(r"\d{12}", arn) or arn.endswith(":root"):
        return f"is an account root ({arn})"
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", arn):
        return f"is not an IAM role ARN ({arn})"
    return None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once (call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
