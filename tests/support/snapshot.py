"""Snapshots, not spot checks: everything the embedded stack holds that Bridgehead could create.

``snapshot(stack)`` reads, straight from the moto server (never through a fault-injecting proxy),
for the platform account and every customer account (passed in, and discovered from the
registry's ``aws_account_id`` fields):

* ``stacks``: every CloudFormation stack per region, **deleted ones included**, keyed by stack id
  (a stack deleted and re-created under the same name is two entries);
* ``instances``: every EC2 instance per region (any state), with its tags;
* ``roles``: every IAM role, with its id, inline policy documents and attached policy ARNs;
* ``image_grants`` / ``snapshot_grants``: launch permissions of every image an account owns and
  create-volume permissions of every snapshot it owns (who was granted what, per region);
* ``buckets`` and ``inbox``: every bucket per account, and every object version (and delete
  marker) in the platform inbox bucket;
* ``registry`` and ``ledger``: a full, strongly consistent scan of both DynamoDB tables;
* ``schedules``: every Temporal schedule, from visibility *and* by id for the schedules the
  registry implies (``org-{org}-reverify``, ``dropbox-watch``), since visibility lags.

``diff(a, b)`` returns one readable line per difference (``+`` added, ``-`` removed, ``~``
changed, with the field that changed). Use it around anything that must create nothing::

    before = snapshot(stack, accounts=[ACCOUNT])
    ... a rejected input ...
    assert diff(before, snapshot(stack, accounts=[ACCOUNT])) == []

Sync on purpose: the Temporal part runs its own client on its own event loop in a thread, so sync
and async tests can both call it (async tests: ``await snapshot_async(...)``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import boto3
import botocore.config
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from starter.local import PLATFORM_ACCOUNT, LocalStack

#: One snapshot: section -> key -> a JSON-able value.
Snapshot = dict[str, dict[str, Any]]

SECTIONS = (
    "stacks",
    "instances",
    "roles",
    "image_grants",
    "snapshot_grants",
    "buckets",
    "inbox",
    "registry",
    "ledger",
    "schedules",
)
_de = TypeDeserializer()
_CONFIG = botocore.config.Config(
    retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32
)


def _plain(v: Any) -> Any:
    """DynamoDB/boto3 values as plain JSON-able values (Decimal -> int/str, sets sorted)."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, set | frozenset):
        return sorted(_plain(x) for x in v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _policy(doc: Any) -> Any:
    """A policy document as data; moto returns those of CloudFormation-made roles as a Python
    repr, kept as text (still compared exactly)."""
    if not isinstance(doc, str):
        return doc
    try:
        return json.loads(doc)
    except ValueError:
        return doc


class _Accounts:
    """boto3 clients per (account, service, region), straight to moto (no proxy, no faults)."""

    def __init__(self, stack: LocalStack) -> None:
        self.endpoint = stack.moto_endpoint
        self.keys = stack.platform_keys
        self._sessions = {PLATFORM_ACCOUNT: boto3.session.Session(**self.keys)}
        self._clients: dict[tuple[str, str, str], Any] = {}
        # boto3 sessions are not thread-safe: clients are made under this lock.
        self._lock = threading.Lock()

    def add(self, account: str) -> None:
        """Act in ``account`` as its administrator (call before the threads start)."""
        if account not in self._sessions:
            sts = self.client(PLATFORM_ACCOUNT, "sts")
            role = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
            c = sts.assume_role(RoleArn=role, RoleSessionName="snapshot")["Credentials"]
            self._sessions[account] = boto3.session.Session(
                aws_access_key_id=c["AccessKeyId"],
                aws_secret_access_key=c["SecretAccessKey"],
                aws_session_token=c["SessionToken"],
            )

    def client(self, account: str, service: str, region: str = "us-east-1") -> Any:
        key = (account, service, region)
        with self._lock:
            if key not in self._clients:
                sess = self._sessions[account]
                self._clients[key] = sess.client(
                    service, region_name=region, endpoint_url=self.endpoint, config=_CONFIG
                )
            return self._clients[key]


# --- AWS sections -----------------------------------------------------------------------------
def _stacks(acc: _Accounts, account: str, region: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for page in (
        acc.client(account, "cloudformation", region).get_paginator("list_stacks").paginate()
    ):
        for s in page["StackSummaries"]:
            out[f"{account}/{region}/{s['StackId']}"] = {
                "name": s["StackName"],
                "status": s["StackStatus"],
            }
    return out


def _instances(acc: _Accounts, account: str, region: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for page in acc.client(account, "ec2", region).get_paginator("describe_instances").paginate():
        for r in page["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                out[f"{account}/{region}/{i['InstanceId']}"] = {
                    "state": i["State"]["Name"],
                    "type": i.get("InstanceType"),
                    "image": i.get("ImageId"),
                    "tags": tags,
                }
    return out


def _grants(acc: _Accounts, account: str, region: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ec2 = acc.client(account, "ec2", region)
    images: dict[str, Any] = {}
    for img in ec2.describe_images(Owners=["self"])["Images"]:
        perms = ec2.describe_image_attribute(
            ImageId=img["ImageId"], Attribute="launchPermission"
        ).get("LaunchPermissions", [])
        images[f"{account}/{region}/{img['ImageId']}"] = {
            "name": img.get("Name"),
            "state": img.get("State"),
            "launch_permissions": sorted(
                p.get("UserId") or p.get("Group") or json.dumps(p, sort_keys=True) for p in perms
            ),
        }
    snaps: dict[str, Any] = {}
    # moto lists its ~1300 public AMI snapshots under ``OwnerIds=["self"]``; the owner-id filter is exact.
    for page in ec2.get_paginator("describe_snapshots").paginate(
        Filters=[{"Name": "owner-id", "Values": [account]}]
    ):
        for sn in page["Snapshots"]:
            perms = ec2.describe_snapshot_attribute(
                SnapshotId=sn["SnapshotId"], Attribute="createVolumePermission"
            ).get("CreateVolumePermissions", [])
            snaps[f"{account}/{region}/{sn['SnapshotId']}"] = {
                "create_volume_permissions": sorted(
                    p.get("UserId") or p.get("Group") or json.dumps(p, sort_keys=True)
                    for p in perms
                ),
            }
    return images, snaps


def _roles(acc: _Accounts, account: str) -> dict[str, Any]:
    iam = acc.client(account, "iam")
    out: dict[str, Any] = {}
    for page in iam.get_paginator("list_roles").paginate():
        for r in page["Roles"]:
            name = r["RoleName"]
            inline = {}
            for pn in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                doc = iam.get_role_policy(RoleName=name, PolicyName=pn)["PolicyDocument"]
                inline[pn] = _policy(doc)
            attached = sorted(
                p["PolicyArn"]
                for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
            )
            trust = r.get("AssumeRolePolicyDocument")
            out[f"{account}/{name}"] = _plain(
                {"id": r["RoleId"], "trust": trust, "inline": inline, "attached": attached}
            )
    return out


def _buckets(acc: _Accounts, account: str) -> dict[str, Any]:
    return {
        f"{account}/{b['Name']}": {}
        for b in acc.client(account, "s3").list_buckets().get("Buckets", [])
    }


def _inbox(acc: _Accounts, bucket: str) -> dict[str, Any]:
    s3 = acc.client(PLATFORM_ACCOUNT, "s3")
    out: dict[str, Any] = {}
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                out[f"{v['Key']}@{v['VersionId']}"] = {
                    "etag": v["ETag"],
                    "size": v["Size"],
                    "latest": v["IsLatest"],
                }
            for d in page.get("DeleteMarkers", []):
                out[f"{d['Key']}@{d['VersionId']}"] = {
                    "delete_marker": True,
                    "latest": d["IsLatest"],
                }
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchBucket":
            raise
    return out


def _scan(acc: _Accounts, table: str) -> dict[str, Any]:
    ddb = acc.client(PLATFORM_ACCOUNT, "dynamodb")
    out: dict[str, Any] = {}
    try:
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = ddb.scan(**kwargs)
            for raw in page["Items"]:
                item = {k: _de.deserialize(v) for k, v in raw.items()}
                out[f"{item['pk']}/{item['sk']}"] = _plain(item)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    return out


# --- Temporal ----------------------------------------------------------------------------------
async def _schedules_async(address: str, namespace: str, known: Iterable[str]) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.service import RPCError, RPCStatusCode

    client = await Client.connect(address, namespace=namespace)
    ids = {s.id async for s in await client.list_schedules()} | set(known)
    out: dict[str, Any] = {}
    for sid in sorted(ids):
        try:
            d = await client.get_schedule_handle(sid).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        action = d.schedule.action
        out[sid] = {
            "workflow": getattr(action, "workflow", None),
            "workflow_id": getattr(action, "id", None),
            "task_queue": getattr(action, "task_queue", None),
            "paused": d.schedule.state.paused,
            "intervals": [str(i.every) for i in d.schedule.spec.intervals],
            "cron": list(d.schedule.spec.cron_expressions),
        }
    return out


def _schedules(address: str, namespace: str, known: Iterable[str]) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["v"] = asyncio.run(_schedules_async(address, namespace, known))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["e"] = e

    t = threading.Thread(target=run, name="snapshot-schedules")
    t.start()
    t.join(60)
    if "e" in box:
        raise box["e"]
    if "v" not in box:
        raise TimeoutError("listing Temporal schedules took over 60 s")
    return box["v"]


# --- the snapshot --------------------------------------------------------------------------------
def snapshot(
    stack: LocalStack,
    accounts: Iterable[str] = (),
    regions: Iterable[str] | None = None,
    *,
    namespace: str = "default",
) -> Snapshot:
    """Everything the stack holds, in the platform account and in every customer account
    (``accounts`` plus those the registry names). ``regions``: default every supported region.
    Table and bucket names come from the settings, as the worker's do."""
    from bridgehead.models import SUPPORTED_REGIONS
    from bridgehead.settings import get_settings

    settings = get_settings()
    registry_table, ledger_table, inbox_bucket = (
        settings.registry_table,
        settings.ledger_table,
        settings.inbox_bucket,
    )
    acc = _Accounts(stack)
    snap: Snapshot = {s: {} for s in SECTIONS}
    snap["registry"] = _scan(acc, registry_table)
    snap["ledger"] = _scan(acc, ledger_table)
    found = {str(v["aws_account_id"]) for v in snap["registry"].values() if v.get("aws_account_id")}
    all_accounts = sorted({PLATFORM_ACCOUNT, *accounts, *found})
    regs = sorted(regions or SUPPORTED_REGIONS)
    for a in all_accounts:
        acc.add(a)

    jobs: list[tuple[str, Any, tuple[Any, ...]]] = []
    for a in all_accounts:
        jobs += [("roles", _roles, (acc, a)), ("buckets", _buckets, (acc, a))]
        for r in regs:
            jobs += [
                ("stacks", _stacks, (acc, a, r)),
                ("instances", _instances, (acc, a, r)),
                ("grants", _grants, (acc, a, r)),
            ]
    jobs.append(("inbox", _inbox, (acc, inbox_bucket)))
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [(section, pool.submit(fn, *args)) for section, fn, args in jobs]
        for section, fut in futures:
            value = fut.result()
            if section == "grants":
                snap["image_grants"].update(value[0])
                snap["snapshot_grants"].update(value[1])
            else:
                snap[section].update(value)

    known = {"dropbox-watch"} | {
        f"org-{v['org_id']}-reverify"
        for k, v in snap["registry"].items()
        if k.endswith("/META") and v.get("org_id")
    }
    snap["schedules"] = _schedules(stack.temporal_address, namespace, known)
    return snap


async def snapshot_async(
    stack: LocalStack, accounts: Iterable[str] = (), regions: Iterable[str] | None = None, **kw: Any
) -> Snapshot:
    """:func:`snapshot` from async code, without blocking the test's event loop."""
    return await asyncio.to_thread(
        snapshot, stack, list(accounts), list(regions) if regions else None, **kw
    )


def _fmt(v: Any) -> str:
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def diff(
    a: Snapshot, b: Snapshot, sections: Iterable[str] | None = None, ignore: Iterable[str] = ()
) -> list[str]:
    """What changed from ``a`` to ``b``, one readable line per difference, sorted:
    ``+ stacks 222222222222/us-east-1/arn:...: {"name": ..., "status": ...}`` (added),
    ``- ...`` (removed), ``~ registry ORG#x/META: state "A" -> "B"`` (changed fields).
    ``ignore``: prefixes of ``"<section> <key>"`` whose changes are expected (say why at the call)."""
    lines: list[str] = []
    skip = tuple(ignore)
    for section in sections or SECTIONS:
        sa, sb = a.get(section, {}), b.get(section, {})
        for key in sorted(set(sa) | set(sb)):
            if skip and f"{section} {key}".startswith(skip):
                continue
            if key not in sa:
                lines.append(f"+ {section} {key}: {_fmt(sb[key])}")
            elif key not in sb:
                lines.append(f"- {section} {key}: {_fmt(sa[key])}")
            elif sa[key] != sb[key]:
                va, vb = sa[key], sb[key]
                if isinstance(va, dict) and isinstance(vb, dict):
                    for f in sorted(set(va) | set(vb)):
                        if va.get(f, "<absent>") != vb.get(f, "<absent>"):
                            lines.append(
                                f"~ {section} {key}: {f} {_fmt(va.get(f, '<absent>'))} -> {_fmt(vb.get(f, '<absent>'))}"
                            )
                else:
                    lines.append(f"~ {section} {key}: {_fmt(va)} -> {_fmt(vb)}")
    return lines


def creations(a: Snapshot, b: Snapshot) -> dict[str, int]:
    """What was created from ``a`` to ``b``, counted on the emulator's side by identity, for
    "created exactly once" checks (compare with the number intended):

    * ``stack <account>/<region>/<name>``: new stack *ids* under that name (deleted ones included,
      so a stack deleted and created again counts twice);
    * ``instances <account>/<region>``: new instance ids;
    * ``image <account>/<region>/<name>``: new images owned by the account, by name;
    * ``launch grant <image>-><account>`` / ``volume grant <snapshot>-><account>``: grants added.
    """
    from collections import Counter

    out: Counter[str] = Counter()
    for key in set(b["stacks"]) - set(a["stacks"]):
        account, region, _ = key.split("/", 2)
        out[f"stack {account}/{region}/{b['stacks'][key]['name']}"] += 1
    for key in set(b["instances"]) - set(a["instances"]):
        account, region, _ = key.split("/", 2)
        out[f"instances {account}/{region}"] += 1
    for key in set(b["image_grants"]) - set(a["image_grants"]):
        account, region, _ = key.split("/", 2)
        out[f"image {account}/{region}/{b['image_grants'][key]['name']}"] += 1
    for section, field, label in (
        ("image_grants", "launch_permissions", "launch grant"),
        ("snapshot_grants", "create_volume_permissions", "volume grant"),
    ):
        for key, v in b[section].items():
            old = set(a[section].get(key, {}).get(field, []))
            for grantee in v[field]:
                if grantee not in old:
                    out[f"{label} {key.rsplit('/', 1)[1]}->{grantee}"] += 1
    return dict(out)


def leftovers(snap: Snapshot, account: str, prefix: str) -> list[str]:
    """What of an organisation is still alive in a snapshot: its stacks (names starting with
    ``prefix``) not DELETE_COMPLETE, its instances not terminated, and any launch or create-volume
    grant to its account. After offboarding, this must be empty."""
    out = [
        f"stack {k} {v['name']} {v['status']}"
        for k, v in snap["stacks"].items()
        if k.startswith(f"{account}/")
        and v["name"].startswith(prefix)
        and v["status"] != "DELETE_COMPLETE"
    ]
    out += [
        f"instance {k} {v['state']}"
        for k, v in snap["instances"].items()
        if k.startswith(f"{account}/") and v["state"] not in ("terminated", "shutting-down")
    ]
    out += [
        f"launch grant {k}->{account}"
        for k, v in snap["image_grants"].items()
        if account in v["launch_permissions"]
    ]
    out += [
        f"volume grant {k}->{account}"
        for k, v in snap["snapshot_grants"].items()
        if account in v["create_volume_permissions"]
    ]
    return sorted(out)
