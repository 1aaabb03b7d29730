"""The state behind the latency-faithful fake AWS (:mod:`bench.fakeaws`): stacks that complete after
configured durations, the platform tables, and the few STS and SES answers a cluster lifecycle
needs. Pure bookkeeping on dicts under one lock, no latency and no I/O here (the caller's thread
sleeps for the latency, see :mod:`bench.fakeaws`), so it costs microseconds per call and can be
shared by several worker processes through a multiprocessing manager (:func:`serve`).

Scope, on purpose:

* CloudFormation: CreateStack (``AlreadyExistsException`` for a live name), DescribeStacks (stack
  status from the clock: ``CREATE_IN_PROGRESS`` until ``create_seconds`` after creation, then
  ``CREATE_COMPLETE``; ``DELETE_IN_PROGRESS`` for ``delete_seconds`` after DeleteStack, then the
  ``ValidationError ... does not exist`` AWS answers), DescribeStackEvents (the stack-level events
  those transitions imply, newest first), DeleteStack.
* DynamoDB (the platform registry): items stored as the low-level client sends them (typed
  attribute values), keyed by table and ``pk``/``sk``. Writes apply ``SET``/``REMOVE``/``ADD``;
  **conditions are not evaluated** (every conditional write succeeds): the benchmark has exactly one
  writer per item, and conditional semantics are tested against moto by the integration tests.
* STS AssumeRole / GetCallerIdentity, SES SendEmail, Service Quotas GetServiceQuota (1,000 vCPUs)
  and EC2 DescribeInstances (none running): fixed answers.

Anything else raises ``NotImplementedError`` naming the call, so a new AWS call on the lifecycle's
path shows up as a failed activity in the benchmark rather than a silent success.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.managers import BaseManager
from typing import Any

Answer = tuple[int, dict[str, Any]]
PLATFORM_ACCOUNT = "123456789012"
LOGIN_ADDRESS = "203.0.113.7"

# DynamoDB request parameter names (an emulator of the API must read them; see the exemption in
# tests/test_storage_keys.py, which still checks this module for spelled keys).
_UPDATE = "UpdateExpression"
_NAMES = "ExpressionAttributeNames"
_VALUES = "ExpressionAttributeValues"
_TRANSACT = "TransactItems"
_QUERY_VALUES = _VALUES


def _error(code: str, message: str, status: int = 400) -> Answer:
    return status, {"Error": {"Code": code, "Message": message}}


class FakeWorld:
    """Stacks, items and fixed answers; thread-safe, every method takes plain picklable values."""

    def __init__(self, create_seconds: float = 0.0, delete_seconds: float = 0.0) -> None:
        self.create_seconds = create_seconds
        self.delete_seconds = delete_seconds
        self._lock = threading.Lock()
        self._stacks: dict[tuple[str, str], dict[str, Any]] = {}
        self._items: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: dict[str, int] = {}

    # --- set-up and inspection ----------------------------------------------------------------
    def configure(self, create_seconds: float, delete_seconds: float) -> None:
        with self._lock:
            self.create_seconds, self.delete_seconds = create_seconds, delete_seconds

    def load_items(self, table: str, items: list[dict[str, Any]]) -> int:
        """Seed ``table`` with typed items (e.g. scanned from moto after a real onboarding)."""
        with self._lock:
            for item in items:
                self._items[(table, item["pk"]["S"], item["sk"]["S"])] = item
        return len(items)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)

    def stacks_in_progress(self) -> int:
        now = time.time()
        with self._lock:
            return sum(
                1
                for s in self._stacks.values()
                if s["deleted_at"] is None and now - s["created_at"] < self.create_seconds
            )

    # --- the one entry point --------------------------------------------------------------------
    def call(self, service: str, op: str, region: str, params: dict[str, Any]) -> Answer:
        handler = getattr(self, f"_{service.replace('-', '_')}_{op}", None)
        with self._lock:
            key = f"{service}:{op}"
            self.calls[key] = self.calls.get(key, 0) + 1
            if handler is None:
                raise NotImplementedError(f"the fake AWS does not answer {key}")
            return handler(region, params)  # type: ignore[no-any-return]

    # --- CloudFormation -----------------------------------------------------------------------
    def _find(self, region: str, name_or_id: str) -> dict[str, Any] | None:
        s = self._stacks.get((region, name_or_id))
        if s is None:
            s = next((v for v in self._stacks.values() if v["StackId"] == name_or_id), None)
        if s is None:
            return None
        if s["deleted_at"] is not None and time.time() - s["deleted_at"] >= self.delete_seconds:
            return None
        return s

    def _status(self, s: dict[str, Any]) -> str:
        if s["deleted_at"] is not None:
            return "DELETE_IN_PROGRESS"
        done = time.time() - s["created_at"] >= self.create_seconds
        return "CREATE_COMPLETE" if done else "CREATE_IN_PROGRESS"

    def _cloudformation_CreateStack(self, region: str, p: dict[str, Any]) -> Answer:
        name = p["StackName"]
        if self._find(region, name) is not None:
            return _error("AlreadyExistsException", f"Stack [{name}] already exists")
        stack_id = (
            f"arn:aws:cloudformation:{region}:{PLATFORM_ACCOUNT}:stack/{name}/{time.time_ns()}"
        )
        self._stacks[(region, name)] = {
            "StackId": stack_id,
            "StackName": name,
            "Tags": p.get("Tags", []),
            "created_at": time.time(),
            "deleted_at": None,
        }
        return 200, {"StackId": stack_id}

    def _not_exists(self, name: str) -> Answer:
        return _error("ValidationError", f"Stack with id {name} does not exist")

    def _cloudformation_DescribeStacks(self, region: str, p: dict[str, Any]) -> Answer:
        s = self._find(region, p["StackName"])
        if s is None:
            return self._not_exists(p["StackName"])
        status = self._status(s)
        stack = {
            "StackId": s["StackId"],
            "StackName": s["StackName"],
            "StackStatus": status,
            "CreationTime": datetime.fromtimestamp(s["created_at"], UTC),
            "Tags": s["Tags"],
            "Outputs": [{"OutputKey": "LoginAddress", "OutputValue": LOGIN_ADDRESS}]
            if status == "CREATE_COMPLETE"
            else [],
        }
        return 200, {"Stacks": [stack]}

    def _cloudformation_DescribeStackEvents(self, region: str, p: dict[str, Any]) -> Answer:
        s = self._find(region, p["StackName"])
        if s is None:
            return self._not_exists(p["StackName"])
        created = datetime.fromtimestamp(s["created_at"], UTC)
        marks = [(created, "CREATE_IN_PROGRESS")]
        if s["deleted_at"] is not None or self._status(s) == "CREATE_COMPLETE":
            marks.append((created + timedelta(seconds=self.create_seconds), "CREATE_COMPLETE"))
        if s["deleted_at"] is not None:
            marks.append((datetime.fromtimestamp(s["deleted_at"], UTC), "DELETE_IN_PROGRESS"))
        events = [
            {
                "StackId": s["StackId"],
                "StackName": s["StackName"],
                "EventId": f"{s['StackName']}-{i}",
                "LogicalResourceId": s["StackName"],
                "ResourceType": "AWS::CloudFormation::Stack",
                "ResourceStatus": status,
                "Timestamp": ts,
            }
            for i, (ts, status) in enumerate(marks)
        ]
        return 200, {"StackEvents": events[::-1]}

    def _cloudformation_DeleteStack(self, region: str, p: dict[str, Any]) -> Answer:
        s = self._find(region, p["StackName"])
        if s is not None and s["deleted_at"] is None:
            s["deleted_at"] = time.time()
        return 200, {}

    # --- STS and SES --------------------------------------------------------------------------
    def _sts_AssumeRole(self, region: str, p: dict[str, Any]) -> Answer:
        expires = datetime.now(UTC) + timedelta(seconds=p.get("DurationSeconds", 3600))
        creds = {
            "AccessKeyId": "ASIAFAKEBENCH",
            "SecretAccessKey": "fake-secret-not-a-credential",
            "SessionToken": "fake-session",
            "Expiration": expires,
        }
        user = {"AssumedRoleId": "AROAFAKE:bench", "Arn": p["RoleArn"]}
        return 200, {"Credentials": creds, "AssumedRoleUser": user}

    def _sts_GetCallerIdentity(self, region: str, p: dict[str, Any]) -> Answer:
        arn = f"arn:aws:iam::{PLATFORM_ACCOUNT}:user/bench"
        return 200, {"Account": PLATFORM_ACCOUNT, "Arn": arn, "UserId": "AIDAFAKE"}

    def _service_quotas_GetServiceQuota(self, region: str, p: dict[str, Any]) -> Answer:
        quota = {"ServiceCode": p["ServiceCode"], "QuotaCode": p["QuotaCode"], "Value": 1000.0}
        return 200, {"Quota": quota}

    def _ec2_DescribeInstances(self, region: str, p: dict[str, Any]) -> Answer:
        return 200, {"Reservations": []}  # no instances run in the fake accounts

    def _ses_SendEmail(self, region: str, p: dict[str, Any]) -> Answer:
        return 200, {"MessageId": f"fake-{time.time_ns()}"}

    # --- DynamoDB -----------------------------------------------------------------------------
    def _key(self, table: str, key: dict[str, Any]) -> tuple[str, str, str]:
        return table, key["pk"]["S"], key["sk"]["S"]

    def _dynamodb_GetItem(self, region: str, p: dict[str, Any]) -> Answer:
        item = self._items.get(self._key(p["TableName"], p["Key"]))
        return 200, ({"Item": item} if item is not None else {})

    def _dynamodb_PutItem(self, region: str, p: dict[str, Any]) -> Answer:
        self._items[self._key(p["TableName"], p["Item"])] = p["Item"]
        return 200, {}

    def _dynamodb_DeleteItem(self, region: str, p: dict[str, Any]) -> Answer:
        self._items.pop(self._key(p["TableName"], p["Key"]), None)
        return 200, {}

    def _dynamodb_UpdateItem(self, region: str, p: dict[str, Any]) -> Answer:
        key = self._key(p["TableName"], p["Key"])
        item = dict(self._items.get(key) or {"pk": p["Key"]["pk"], "sk": p["Key"]["sk"]})
        apply_update(item, p.get(_UPDATE, ""), p.get(_NAMES, {}), p.get(_VALUES, {}))
        self._items[key] = item
        return 200, {}

    def _dynamodb_TransactWriteItems(self, region: str, p: dict[str, Any]) -> Answer:
        for entry in p[_TRANSACT]:
            for kind, body in entry.items():
                if kind == "Put":
                    self._dynamodb_PutItem(region, body)
                elif kind == "Update":
                    self._dynamodb_UpdateItem(region, body)
                elif kind == "Delete":
                    self._dynamodb_DeleteItem(region, body)
        return 200, {}

    def _dynamodb_Query(self, region: str, p: dict[str, Any]) -> Answer:
        values = p[_QUERY_VALUES]
        pk, prefix = values[":pk"]["S"], values[":p"]["S"]
        table = p["TableName"]
        found = sorted(
            (k, v)
            for k, v in self._items.items()
            if k[0] == table and k[1] == pk and k[2].startswith(prefix)
        )
        return 200, {"Items": [v for _, v in found], "Count": len(found)}


_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD)\b")


def apply_update(
    item: dict[str, Any], expr: str, names: dict[str, str], values: dict[str, Any]
) -> None:
    """Apply an update expression of the forms the registry writes (``SET #a = :a, …``,
    ``REMOVE #a, …``, ``ADD #a :a, …``) to a typed item, in place."""
    parts = _CLAUSE.split(expr)
    for verb, body in zip(parts[1::2], parts[2::2], strict=True):
        for clause in (c.strip() for c in body.split(",") if c.strip()):
            if verb == "SET":
                lhs, rhs = (x.strip() for x in clause.split("=", 1))
                item[names.get(lhs, lhs)] = values[rhs]
            elif verb == "REMOVE":
                item.pop(names.get(clause, clause), None)
            else:
                lhs, rhs = clause.split()
                name = names.get(lhs, lhs)
                old = Decimal(item.get(name, {"N": "0"})["N"])
                item[name] = {"N": str(old + Decimal(values[rhs]["N"]))}


_SHARED: FakeWorld | None = None


def _shared_world() -> FakeWorld:
    global _SHARED
    if _SHARED is None:
        _SHARED = FakeWorld()
    return _SHARED


class WorldManager(BaseManager):
    """Serves one :class:`FakeWorld` to every worker process of the scale-out scenario."""


WorldManager.register("world", callable=_shared_world)
_AUTHKEY = b"bench-fakeaws"


def serve() -> tuple[WorldManager, str, Any]:
    """Start a manager process (spawned, not forked: the parent runs Temporal's threads) holding a
    fresh world; returns the manager (shut it down when done), its socket address and a proxy."""
    import multiprocessing
    import os
    import tempfile

    address = os.path.join(tempfile.mkdtemp(prefix="fakeaws-"), "world.sock")
    m = WorldManager(address=address, authkey=_AUTHKEY, ctx=multiprocessing.get_context("spawn"))
    m.start()
    return m, address, Resilient(m.world())  # type: ignore[attr-defined]


def connect(address: str) -> Any:
    """A proxy to the shared :class:`FakeWorld` served at ``address`` (same methods)."""
    m = WorldManager(address=address, authkey=_AUTHKEY)
    m.connect()
    return Resilient(m.world())  # type: ignore[attr-defined]


class Resilient:
    """A world proxy whose calls survive being interrupted. A proxy keeps one connection per
    thread; an exception raised into the thread while it reads the answer (Temporal cancels a
    threaded activity by raising ``CancelledError`` into its thread, at any bytecode) leaves the
    rest of that answer in the socket, and the thread's next call would read it as its own
    answer, or block on a length read from the middle of it. Any exception out of a call drops
    the thread's connection (the world answers errors as status codes, so this is rare and costs
    one reconnect); the next call opens a fresh one."""

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_proxy":  # copy and pickle probe before __init__
            raise AttributeError(name)
        method = getattr(self._proxy, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except BaseException:
                self.drop_connection()
                raise

        return call

    def drop_connection(self) -> None:
        """Close and forget this thread's connection (the proxy reconnects on its next call)."""
        tls = self._proxy._tls
        conn = getattr(tls, "connection", None)
        if conn is not None:
            del tls.connection
            try:
                conn.close()
            except OSError:
                pass
